"""Coverage of both languages in one run (`nox -s coverage`).

- Python: coverage.py measures `src/harness` in pytest, its xdist workers and the servers the
  harness starts (the mock), as configured in pyproject.toml's `[tool.coverage.run]`.
- Rust: the proxy is built with coverage instrumentation (cargo-llvm-cov's environment) into a
  target directory of its own, `proxy/target/llvm-cov-target`, so the ordinary release binary
  is never touched. The test run's stacks start that binary through a generated stack config
  (`SWITCHYARD_STACK_CONFIG`) that differs from `config/stack.toml` only in the proxy's
  executable and an `LLVM_PROFILE_FILE` in its environment. The proxy writes its profile when
  it exits on SIGTERM (graceful shutdown); `cargo test` adds the unit and integration tests'.
  `cargo llvm-cov report` merges every profile in that directory.

Both figures are lines of code; the session fails when either is below its threshold.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.compat import tomllib
from harness.dev import nox_support
from harness.runtime import paths, toolchain
from harness.runtime.config import load_stack_config, toml_document

# Percent of lines covered below which the session fails.
PYTHON_FAIL_UNDER = 85.0  # src/harness (the mock included), unit and mock tiers
RUST_FAIL_UNDER_LINES = 93.0  # proxy/src without the bench tools; measured 95.6

# The bench tools (the workspace member proxy/bench/, formerly src/bin) and the Rust integration
# tests themselves are not the proxy. `cargo test` and `cargo llvm-cov report` run without
# --workspace: the server package only, whose files are all the report measures.
RUST_IGNORE_FILENAME_REGEX = r"proxy/(src/bin|bench|tests)/"
PROXY_BINARY = "switchyard"


def reports_dir() -> Path:
    return paths.reports_dir() / "coverage"


def python_reports() -> Path:
    return reports_dir() / "python"


def rust_reports() -> Path:
    return reports_dir() / "rust"


def manifest() -> Path:
    return paths.root() / "proxy" / "Cargo.toml"


def instrumented_target_dir() -> Path:
    return paths.root() / "proxy" / "target" / "llvm-cov-target"


# ---------------------------------------------------------------------- figures and thresholds


@dataclass(frozen=True)
class Figure:
    """One language's line coverage against its threshold, and where its report is."""

    language: str
    what: str
    covered: int
    total: int
    threshold: float
    report: Path

    @property
    def percent(self) -> float:
        return 100.0 * self.covered / self.total if self.total else 0.0

    @property
    def passed(self) -> bool:
        return self.total > 0 and self.percent >= self.threshold

    def line(self) -> str:
        verdict = "ok" if self.passed else "BELOW THRESHOLD"
        return (
            f"{self.language}: {self.percent:.1f}% of {self.what} lines "
            f"({self.covered}/{self.total}; threshold {self.threshold:g}%, {verdict}); "
            f"report: {_shown(self.report)}"
        )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(paths.root()))
    except ValueError:
        return str(path)


def python_figure(xml_report: Path, html_index: Path) -> Figure:
    """Lines covered and measured, from coverage.py's Cobertura XML report."""
    root = ET.parse(xml_report).getroot()
    return Figure(
        language="Python",
        what="src/harness",
        covered=int(root.attrib["lines-covered"]),
        total=int(root.attrib["lines-valid"]),
        threshold=PYTHON_FAIL_UNDER,
        report=html_index,
    )


def rust_figure(json_summary: Path, html_index: Path) -> Figure:
    """Lines covered and measured, from `cargo llvm-cov report --json --summary-only`."""
    data = json.loads(json_summary.read_text())
    lines = data["data"][0]["totals"]["lines"]
    return Figure(
        language="Rust",
        what="proxy/src (without the bench tools)",
        covered=int(lines["covered"]),
        total=int(lines["count"]),
        threshold=RUST_FAIL_UNDER_LINES,
        report=html_index,
    )


def failures(figures: list[Figure]) -> list[str]:
    """A message per figure below its threshold (empty: all pass)."""
    return [
        f"{f.language} coverage {f.percent:.1f}% is below {f.threshold:g}%"
        for f in figures
        if not f.passed
    ]


# ---------------------------------------------------------------------- the instrumented proxy


def parse_show_env(text: str) -> dict[str, str]:
    """`cargo llvm-cov show-env` output (`KEY=value` lines, shell-quoted) as a dict."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if len(words) != 1 or "=" not in words[0]:
            raise ValueError(f"unexpected line in `cargo llvm-cov show-env` output: {line!r}")
        key, _, value = words[0].partition("=")
        env[key] = value
    return env


def instrumented_env(tools: Mapping[str, str]) -> dict[str, str]:
    """The environment that builds and reports the instrumented proxy: cargo-llvm-cov's,
    in its own target directory, with the llvm tools that read this rustc's profiles."""
    base = {**tools, "CARGO_TARGET_DIR": str(instrumented_target_dir())}
    done = subprocess.run(
        ["cargo", "llvm-cov", "show-env", "--manifest-path", str(manifest())],
        env={**os.environ, **base},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise toolchain.ToolMissing(f"cargo llvm-cov show-env failed:\n{done.stderr.strip()}")
    return {**parse_show_env(done.stdout), **base}


def instrumented_stack_config(
    source: Path, destination: Path, binary: Path, profile_file: str
) -> Path:
    """Write a copy of the stack config whose proxy runs `binary` and writes its coverage
    profile to `profile_file`; everything else is unchanged. Returns `destination`."""
    with open(source, "rb") as handle:
        data = tomllib.load(handle)
    proxy_name = data.get("stack", {}).get("proxy", "proxy")
    proxy = data["services"][proxy_name]
    proxy["command"] = [str(binary), *proxy["command"][1:]]
    proxy["env"] = {**proxy.get("env", {}), "LLVM_PROFILE_FILE": profile_file}
    destination.parent.mkdir(parents=True, exist_ok=True)
    comment = (
        f"Generated by harness.dev.coverage from {source}: the proxy is the instrumented build."
    )
    destination.write_text(toml_document(data, comment=comment))
    # Fail here, not in the middle of the test run, if the copy is not a valid stack config.
    load_stack_config(destination, paths.root())
    return destination


@dataclass(frozen=True)
class RustRun:
    """What the session needs to drive and report the instrumented proxy."""

    env: dict[str, str]
    stack_config: Path

    @property
    def target_dir(self) -> Path:
        return Path(self.env["CARGO_TARGET_DIR"])


def prepare_rust(session: Any) -> RustRun:
    """Tools, a clean slate, the instrumented build and the stack config that runs it."""
    say: Callable[[str], None] = session.log
    tools = toolchain.ensure_llvm_tools(say)
    toolchain.ensure_cargo_llvm_cov(say)
    env = instrumented_env(tools)
    cargo = ["--manifest-path", str(manifest())]
    session.log("# removing old profiles and the workspace's instrumented artifacts")
    session.run("cargo", "llvm-cov", "clean", "--workspace", *cargo, env=env, external=True)
    session.log("# building the instrumented proxy into proxy/target/llvm-cov-target")
    session.run(
        "cargo", "build", "--release", "--bin", PROXY_BINARY, *cargo, env=env, external=True
    )
    target = Path(env["CARGO_TARGET_DIR"])
    # Into the directory `cargo llvm-cov report` merges; %p: one file per process.
    profile_file = str(target / "stack-proxy-%p-%2m.profraw")
    config = instrumented_stack_config(
        paths.stack_config(),
        paths.state_dir() / "coverage" / "stack.toml",
        target / "release" / PROXY_BINARY,
        profile_file,
    )
    return RustRun(env=env, stack_config=config)


def stack_env(rust: RustRun) -> dict[str, str | None]:
    """The test run's environment: its own stacks (never a reused or external one), from the
    generated stack config."""
    return {
        "SWITCHYARD_STACK_CONFIG": str(rust.stack_config),
        "SWITCHYARD_REUSE": "0",
        "SWITCHYARD_STACK": None,
        "SWITCHYARD_BASE_URL": None,
        "SWITCHYARD_MOCK_URL": None,
    }


def run_rust_tests(session: Any, rust: RustRun) -> None:
    """`cargo test` of the proxy under instrumentation (its unit and integration tests)."""
    session.run(
        "cargo",
        "test",
        "--release",
        "--manifest-path",
        str(manifest()),
        env=rust.env,
        external=True,
    )


def report_python(session: Any) -> Figure:
    """Combine the data files; terminal, HTML and XML reports under reports/coverage/python."""
    out = python_reports()
    out.mkdir(parents=True, exist_ok=True)
    session.run("coverage", "combine", "--quiet", success_codes=[0, 1])
    session.run("coverage", "report")
    session.run("coverage", "html", "--quiet", "-d", str(out))
    session.run("coverage", "xml", "--quiet", "-o", str(out / "coverage.xml"))
    return python_figure(out / "coverage.xml", out / "index.html")


def report_rust(session: Any, rust: RustRun) -> Figure:
    """Summary, HTML and a JSON summary of the proxy under reports/coverage/rust."""
    out = rust_reports()
    out.mkdir(parents=True, exist_ok=True)
    common = [
        "cargo", "llvm-cov", "report", "--release", "--manifest-path", str(manifest()),
        "--ignore-filename-regex", RUST_IGNORE_FILENAME_REGEX,
    ]  # fmt: skip
    session.run(*common, env=rust.env, external=True)
    session.run(*common, "--html", "--output-dir", str(out), env=rust.env, external=True)
    summary = out / "summary.json"
    session.run(
        *common, "--json", "--summary-only", "--output-path", str(summary),
        env=rust.env, external=True,
    )  # fmt: skip
    return rust_figure(summary, out / "html" / "index.html")


def measure(session: Any, *tests: str) -> None:
    """The whole session: the instrumented proxy, pytest of `tests` under coverage.py, cargo
    test, both reports, and the verdict. A failed test run still gets its reports first."""
    rust = prepare_rust(session)
    session.run("coverage", "erase")
    tests_failed = False
    try:
        nox_support.pytest(
            session,
            "coverage",
            *tests,
            runner=("coverage", "run", "-m", "pytest"),
            env=stack_env(rust),
        )
    except nox_support.command_failed():
        tests_failed = True  # the reports still come first
    run_rust_tests(session, rust)
    figures = [report_python(session), report_rust(session, rust)]
    summarise(session, figures, tests_failed=tests_failed)


def summarise(session: Any, figures: list[Figure], *, tests_failed: bool) -> None:
    """One line per language; then fail if the tests failed or a figure is below threshold."""
    for figure in figures:
        session.log(figure.line())
    problems = (["the tests failed"] if tests_failed else []) + failures(figures)
    if problems:
        session.error("; ".join(problems))
