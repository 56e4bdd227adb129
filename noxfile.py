"""Nox sessions: the test tiers, coverage, lint and the Rust checks, each in its own uv env.

`nox -s mock` runs once, on the interpreter running nox; `nox -s mock -P 3.12` picks another.
Environments are reused and synced from uv.lock, so a warm session starts in about a second.
Every test session writes JUnit XML to reports/ and, when it fails, copies the stack's server
logs to reports/failure-logs/<session>/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

from harness.dev import coverage as coverage_support
from harness.dev import nox_support

ROOT = Path(__file__).parent
PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"), max_version="3.13")
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

nox_support.expose_pyenv_interpreters(PYTHONS)
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = "CI" in os.environ
nox.options.sessions = ["lint", "rust", "unit", "mock"]

RELIABILITY = "chaos or robustness or security"
RELIABILITY_RUNS = 3


def _sync(session: nox.Session, *groups: str) -> None:
    """Install the project and the given dependency groups from the lock, nothing else."""
    args = ["uv", "sync", "--frozen", "--no-default-groups", "--inexact"]
    for group in groups:
        args += ["--group", group]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})


def _pytest(
    session: nox.Session,
    report: str,
    *args: str,
    runner: tuple[str, ...] = ("pytest",),
    env: dict[str, str | None] | None = None,
) -> None:
    """pytest (through `runner`) with JUnit XML and failure logs named after `report`;
    arguments after `--` replace the default `-n auto`."""
    reporting, reporting_env = nox_support.pytest_reporting(
        report, str(session.python or THIS_PYTHON)
    )
    session.run(
        *runner,
        *args,
        *reporting,
        "--durations=10",
        *(session.posargs or ["-n", "auto"]),
        env={**reporting_env, **(env or {})},
    )


@nox.session(python=THIS_PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tier: the harness and the mock upstream's fidelity to the openai SDK."""
    _sync(session, "test", "bench")
    _pytest(session, "unit", "tests/unit")


@nox.session(python=THIS_PYTHON)
def mock(session: nox.Session) -> None:
    """Mock tier: the real proxy against the mock upstreams, through the openai SDK."""
    _sync(session, "test")
    session.log("# building the proxy when stale, and provisioning redis-server")
    nox_support.prepare_stack(session)
    _pytest(session, "mock", "tests/mock")


@nox.session(python=THIS_PYTHON)
def integration(session: nox.Session) -> None:
    """Integration tier: against a real endpoint when OPENAI_API_KEY is set (skipped otherwise)."""
    _sync(session, "test")
    nox_support.prepare_stack(session)
    _pytest(session, "integration", "tests/integration")


@nox.session(python=THIS_PYTHON, default=False)
def fuzz(session: nox.Session) -> None:
    """The full fuzz run (over 10,000 cases) of the proxy's request handling."""
    _sync(session, "test")
    nox_support.prepare_stack(session)
    session.env.setdefault("SWITCHYARD_FUZZ_EXAMPLES", "1500")
    _pytest(session, "fuzz", "tests/mock", "-k", "fuzz or schemathesis", "-p", "no:cacheprovider")


@nox.session(python=THIS_PYTHON, default=False)
def reliability(session: nox.Session) -> None:
    """The chaos, robustness and security tests of the unit and mock tiers, three runs in a row."""
    _sync(session, "test")
    nox_support.prepare_stack(session)
    failed = []
    for run in range(1, RELIABILITY_RUNS + 1):
        session.log(f"# reliability run {run} of {RELIABILITY_RUNS}")
        try:
            _pytest(session, f"reliability-{run}", "tests/unit", "tests/mock", "-m", RELIABILITY)
        except nox.command.CommandFailed:
            failed.append(run)
    if failed:
        runs = ", ".join(map(str, failed))
        session.error(f"{len(failed)} of {RELIABILITY_RUNS} runs failed (run {runs})")


@nox.session(python=THIS_PYTHON, default=False)
def soak(session: nox.Session) -> None:
    """The soak run (scripts/soak.py; arguments after -- go to it)."""
    _sync(session, "bench")
    nox_support.prepare_stack(session)
    session.run("python", "scripts/soak.py", "--no-build", *session.posargs)


@nox.session(python=THIS_PYTHON, default=False)
def coverage(session: nox.Session) -> None:
    """Unit and mock tiers (and cargo test) measuring the harness and an instrumented proxy.

    coverage.py follows pytest, its xdist workers and the servers it starts; the proxy is a
    cargo-llvm-cov build of its own. Reports go to reports/coverage/; the session fails when a
    test fails or either language is below its threshold (see harness.dev.coverage).
    """
    _sync(session, "test", "coverage")
    nox_support.prepare_stack(session)
    rust = coverage_support.prepare_rust(session)
    session.run("coverage", "erase")
    tests_failed = False
    try:
        _pytest(
            session,
            "coverage",
            "tests/unit",
            "tests/mock",
            runner=("coverage", "run", "-m", "pytest"),
            env=coverage_support.stack_env(rust),
        )
    except nox.command.CommandFailed:
        tests_failed = True  # the reports still come first
    coverage_support.run_rust_tests(session, rust)
    figures = [coverage_support.report_python(session), coverage_support.report_rust(session, rust)]
    coverage_support.summarise(session, figures, tests_failed=tests_failed)


@nox.session(python=THIS_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark: switchyard against its upstream (scripts/bench.py; arguments after -- go
    to it, e.g. `nox -s bench -- --quick`)."""
    _sync(session, "bench")
    nox_support.prepare_stack(session)
    session.run("python", "scripts/bench.py", "--no-build", *session.posargs)


@nox.session(python=THIS_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check), mypy, and actionlint on the CI workflow."""
    _sync(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    nox_support.actionlint(session)


@nox.session(python=False)
def rust(session: nox.Session) -> None:
    """cargo fmt --check, cargo clippy -D warnings, cargo test."""
    manifest = ["--manifest-path", "proxy/Cargo.toml"]
    session.run("cargo", "fmt", *manifest, "--check", external=True)
    session.run(
        "cargo", "clippy", *manifest, "--all-targets", "--", "-D", "warnings", external=True
    )
    session.run("cargo", "test", *manifest, external=True)
