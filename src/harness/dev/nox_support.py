"""Helpers for noxfile.py: interpreter discovery, environments from the lock, stack preparation,
pytest with its reports, actionlint and the Rust checks. `noxfile.py` only composes these."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.pytest import failure_logs
from harness.runtime import paths, stack, toolchain

WORKFLOWS = (".github/workflows/ci.yml",)
# Where the `harness.pytest.failure_logs` pytest plugin copies a failed run's server logs.
FAILURE_LOGS_ENV = failure_logs.DESTINATION_ENV
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# The crate and its workspace members (the bench tools live in proxy/bench/).
CARGO_MANIFEST = ("--manifest-path", "proxy/Cargo.toml")


def expose_pyenv_interpreters(versions: Iterable[str]) -> None:
    """Put pyenv's installed interpreters on PATH.

    pyenv's shims fail for versions that are not selected globally, so neither nox nor uv can
    find them through the shims; the versions' own bin directories work. Nothing is downloaded.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = []
    for version in versions:
        candidates = glob.glob(str(root / "versions" / f"{version}.*" / "bin"))
        found += sorted(candidates, key=_patch_level)[-1:]
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


def _patch_level(bin_dir: str) -> tuple[int, ...]:
    """3.12.10 sorts after 3.12.9: version parts compare as numbers, not text."""
    name = Path(bin_dir).parent.name
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def command_failed() -> type[Exception]:
    """nox's CommandFailed: what `session.run` raises when a command fails. Imported when a
    session runs (nox is there then), so this module imports without nox."""
    from nox.command import CommandFailed

    return CommandFailed


def sync(session: Any, *groups: str) -> None:
    """Install the project and the given dependency groups from the lock, nothing else; never
    download an interpreter (unless UV_PYTHON_DOWNLOADS says otherwise)."""
    args = ["uv", "sync", "--frozen", "--no-default-groups", "--inexact"]
    for group in groups:
        args += ["--group", group]
    env = {
        "UV_PROJECT_ENVIRONMENT": session.virtualenv.location,
        "UV_PYTHON_DOWNLOADS": os.environ.get("UV_PYTHON_DOWNLOADS", "never"),
    }
    session.run_install(*args, env=env)


def pytest(
    session: Any,
    report: str,
    *args: str,
    runner: tuple[str, ...] = ("pytest",),
    env: dict[str, str | None] | None = None,
) -> None:
    """pytest (through `runner`) with JUnit XML and failure logs named after `report`, and the
    arguments after `--` on top (see `pytest_arguments`)."""
    reporting, reporting_env = pytest_reporting(report, str(session.python or THIS_PYTHON))
    session.run(
        *runner,
        *pytest_arguments(args, session.posargs),
        *reporting,
        "--durations=10",
        env={**reporting_env, **(env or {})},
    )


# The dev loop's selection (the harness plugin's `--quick`), without the fuzz modules and the
# fuzzers' pytest plugins: all their tests are slow, and importing them costs each pytest
# process (every xdist worker) seconds.
FUZZ_MODULES = ("tests/mock/test_fuzz.py", "tests/mock/test_schemathesis.py")
# Serial: about 30 tests finish sooner than extra workers start (each imports openai, ~2 s).
FUZZ_PLUGINS_OFF = ("-p", "no:schemathesis", "-p", "no:hypothesispytest")
QUICK_MOCK = (
    "--quick",
    *("-n", "0"),
    *(f"--ignore={module}" for module in FUZZ_MODULES),
    *FUZZ_PLUGINS_OFF,
)

# The unit tier's dev loop (`nox -s unit`) leaves out the tests marked slow: the chaos kills,
# whole nested runs of invoke, pytest and the benchmark, and the plots. `nox -s unit_full` runs
# them too, as CI does. Neither runs the cases marked built_proxy: they need the release proxy,
# so they wait for the sessions that build it (reliability runs them three times, coverage once).
# No unit test fuzzes, so neither loads the fuzzers' plugins (seconds in every xdist worker).
# The quick loop sends each module to one worker: the mock-wire modules start a mock each.
UNIT_QUICK = ("-m", "not slow and not built_proxy", "--dist", "loadfile", *FUZZ_PLUGINS_OFF)
UNIT_FULL = ("-m", "not built_proxy", *FUZZ_PLUGINS_OFF)

# pytest options whose value is the next argument, so that value is never taken for a path.
VALUED_OPTIONS = frozenset(
    {"-k", "-m", "-n", "-p", "-o", "-c", "-W", "--deselect", "--ignore", "--ignore-glob",
     "--maxfail", "--tb", "--dist", "--numprocesses", "--rootdir", "--basetemp", "--durations"}
)  # fmt: skip
PARALLELISM = ("-n", "auto")


def pytest_arguments(defaults: Iterable[str], posargs: Iterable[str]) -> list[str]:
    """A session's own arguments with the ones after `--`: a path there (a test file, a folder,
    or `file::test`) replaces the session's paths, and `-n auto` stays unless the session or
    they set `-n` or turn xdist off, so narrowing a run never loses its parallelism (the last
    `-n` wins, so theirs overrides the session's)."""
    defaults, posargs = list(defaults), list(posargs)
    if any(_names_a_path(posargs, index) for index in range(len(posargs))):
        defaults = [arg for index, arg in enumerate(defaults) if not _names_a_path(defaults, index)]
    chooses_workers = any(
        arg in ("-n", "--numprocesses", "no:xdist")
        or arg.startswith("--numprocesses=")
        or (arg.startswith("-n") and arg[2:].isalnum())
        for arg in [*defaults, *posargs]
    )
    return [*defaults, *posargs, *(() if chooses_workers else PARALLELISM)]


def _names_a_path(args: list[str], index: int) -> bool:
    arg = args[index]
    if arg.startswith("-") or (index and args[index - 1] in VALUED_OPTIONS):
        return False
    return Path(arg.split("::")[0]).exists()


def rust_checks(session: Any) -> None:
    """cargo fmt --check, clippy with warnings as errors, and the tests, of the whole workspace."""
    session.run("cargo", "fmt", *CARGO_MANIFEST, "--all", "--check", external=True)
    clippy = ["cargo", "clippy", *CARGO_MANIFEST, "--workspace", "--all-targets"]
    session.run(*clippy, "--", "-D", "warnings", external=True)
    session.run("cargo", "test", *CARGO_MANIFEST, "--workspace", external=True)


def prepare_stack(session: Any) -> None:
    """Build what the stack builds (cargo is incremental) and make sure redis-server exists;
    against an external proxy (SWITCHYARD_BASE_URL) nothing is built or started here."""
    external = os.environ.get("SWITCHYARD_BASE_URL")
    if external:
        session.log(f"SWITCHYARD_BASE_URL is set: testing {external}, nothing to build")
        return
    config = stack.load().config
    toolchain.build_services(config, session.log)
    toolchain.ensure_redis(session.log)


def pytest_reporting(report: str, python: str) -> tuple[list[str], dict[str, str]]:
    """pytest arguments and environment for a test session's reports: JUnit XML in
    `reports/junit-<report>-py<python>.xml`, and on failure the server logs of the stacks the
    run used in `reports/failure-logs/<report>/` (the `harness.pytest.failure_logs` plugin)."""
    reports = paths.reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    args = [
        f"--junitxml={reports / f'junit-{report}-py{python}.xml'}",
        "-p",
        "harness.pytest.failure_logs",
    ]
    env = {FAILURE_LOGS_ENV: str(reports / "failure-logs" / report)}
    return args, env


def actionlint(session: Any) -> None:
    """actionlint (installed at its pinned version when missing) on the CI workflows."""
    binary = toolchain.ensure_actionlint(session.log)
    session.run(binary, *WORKFLOWS, external=True)
