"""The coverage session's logic (figures, thresholds, the instrumented stack config), the
failure-log plugin, and the tool lookups the lint and coverage sessions rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.compat import tomllib
from harness.dev import coverage, nox_support
from harness.pytest import failure_logs
from harness.runtime import paths, toolchain
from harness.runtime.config import load_stack_config

REPO_STACK = paths.root() / "config" / "stack.toml"


# ---------------------------------------------------------------------- figures


def cobertura(tmp_path: Path, covered: int, valid: int) -> Path:
    path = tmp_path / "coverage.xml"
    rate = covered / valid if valid else 0
    path.write_text(
        '<?xml version="1.0" ?>\n'
        f'<coverage version="7.10" line-rate="{rate:.4f}" branch-rate="0" '
        f'lines-covered="{covered}" lines-valid="{valid}" branches-covered="0" '
        'branches-valid="0" complexity="0"><packages/></coverage>\n'
    )
    return path


def llvm_summary(tmp_path: Path, covered: int, count: int) -> Path:
    path = tmp_path / "summary.json"
    lines = {"count": count, "covered": covered, "percent": 100.0 * covered / count}
    other = {"count": 1, "covered": 0, "percent": 0.0}
    totals = {"lines": lines, "functions": other, "regions": other}
    path.write_text(json.dumps({"data": [{"totals": totals}], "type": "llvm.coverage.json"}))
    return path


def test_python_figure_reads_lines_from_the_xml_report(tmp_path: Path) -> None:
    figure = coverage.python_figure(cobertura(tmp_path, 1700, 2000), tmp_path / "index.html")
    assert (figure.covered, figure.total) == (1700, 2000)
    assert figure.percent == pytest.approx(85.0)
    assert figure.threshold == coverage.PYTHON_FAIL_UNDER
    assert figure.passed


def test_rust_figure_reads_line_totals_not_functions(tmp_path: Path) -> None:
    figure = coverage.rust_figure(llvm_summary(tmp_path, 450, 600), tmp_path / "index.html")
    assert (figure.covered, figure.total) == (450, 600)
    assert figure.percent == pytest.approx(75.0)
    assert figure.threshold == coverage.RUST_FAIL_UNDER_LINES


@pytest.mark.parametrize(
    ("covered", "total", "threshold", "passed"),
    [
        (85, 100, 85.0, True),  # exactly at the threshold passes
        (849, 1000, 85.0, False),  # 84.9 does not round up into a pass
        (0, 0, 0.0, False),  # nothing measured is a failure, whatever the threshold
        (100, 100, 100.0, True),
    ],
)
def test_threshold_boundaries(covered: int, total: int, threshold: float, passed: bool) -> None:
    figure = coverage.Figure("Python", "src/harness", covered, total, threshold, Path("x"))
    assert figure.passed is passed
    assert bool(coverage.failures([figure])) is not passed


def test_summary_line_names_percent_lines_and_report_path() -> None:
    report = paths.root() / "reports" / "coverage" / "rust" / "html" / "index.html"
    figure = coverage.Figure("Rust", "proxy/src", 812, 1000, 80.0, report)
    line = figure.line()
    assert line.startswith("Rust: 81.2% of proxy/src lines (812/1000; threshold 80%, ok)")
    assert line.endswith("report: reports/coverage/rust/html/index.html")
    low = coverage.Figure("Rust", "proxy/src", 700, 1000, 80.0, report)
    assert "BELOW THRESHOLD" in low.line()


class FakeSession:
    def __init__(self) -> None:
        self.logged: list[str] = []
        self.errors: list[str] = []

    def log(self, message: str) -> None:
        self.logged.append(message)

    def error(self, message: str) -> None:
        self.errors.append(message)
        raise RuntimeError(message)


def figures(python: int, rust: int) -> list[coverage.Figure]:
    return [
        coverage.Figure("Python", "src/harness", python, 100, 85.0, Path("p")),
        coverage.Figure("Rust", "proxy/src", rust, 100, 80.0, Path("r")),
    ]


def test_summarise_prints_a_line_per_language_and_passes() -> None:
    session = FakeSession()
    coverage.summarise(session, figures(90, 81), tests_failed=False)
    assert [line.split(":")[0] for line in session.logged] == ["Python", "Rust"]
    assert session.errors == []


@pytest.mark.parametrize(
    ("python", "rust", "tests_failed", "expected"),
    [
        (84, 90, False, ["Python coverage 84.0% is below 85%"]),
        (90, 79, False, ["Rust coverage 79.0% is below 80%"]),
        (90, 90, True, ["the tests failed"]),
        (10, 10, True, ["the tests failed", "Python coverage", "Rust coverage"]),
    ],
)
def test_summarise_fails_the_session_for_each_problem(
    python: int, rust: int, tests_failed: bool, expected: list[str]
) -> None:
    session = FakeSession()
    with pytest.raises(RuntimeError):
        coverage.summarise(session, figures(python, rust), tests_failed=tests_failed)
    assert len(session.logged) == 2, "the figures are printed before the failure"
    (message,) = session.errors
    for part in expected:
        assert part in message


# ---------------------------------------------------------------------- the instrumented proxy


def test_parse_show_env_unquotes_values() -> None:
    text = (
        "LLVM_PROFILE_FILE='/w/proxy/target/llvm-cov-target/proxy-%p-%2m.profraw'\n"
        "__CARGO_LLVM_COV_RUSTC_WRAPPER_RUSTFLAGS='-C\x1finstrument-coverage\x1f--cfg=coverage'\n"
        "\n"
        "CARGO_LLVM_COV=1\n"
        "SPACED='a b'\n"
    )
    env = coverage.parse_show_env(text)
    assert env == {
        "LLVM_PROFILE_FILE": "/w/proxy/target/llvm-cov-target/proxy-%p-%2m.profraw",
        "__CARGO_LLVM_COV_RUSTC_WRAPPER_RUSTFLAGS": "-C\x1finstrument-coverage\x1f--cfg=coverage",
        "CARGO_LLVM_COV": "1",
        "SPACED": "a b",
    }


@pytest.mark.parametrize("line", ["not an assignment", "A=1 B=2"])
def test_parse_show_env_rejects_what_it_does_not_understand(line: str) -> None:
    with pytest.raises(ValueError, match="unexpected line"):
        coverage.parse_show_env(line)


def test_the_instrumented_copy_holds_every_other_value_of_the_stack_file(tmp_path: Path) -> None:
    binary = tmp_path / "llvm-cov-target" / "release" / "switchyard"
    written = coverage.instrumented_stack_config(
        REPO_STACK, tmp_path / "stack.toml", binary, "p-%p.profraw"
    )
    with open(REPO_STACK, "rb") as handle:
        source = tomllib.load(handle)
    with open(written, "rb") as handle:
        copy = tomllib.load(handle)
    proxy, original = copy["services"]["proxy"], source["services"]["proxy"]
    assert proxy["command"] == [str(binary), *original["command"][1:]]
    assert proxy["env"].pop("LLVM_PROFILE_FILE") == "p-%p.profraw"
    proxy["command"] = original["command"]
    original.setdefault("env", {})
    assert copy == source, "everything else is copied as it was"


def test_instrumented_stack_config_changes_only_the_proxy_binary_and_env(tmp_path: Path) -> None:
    binary = tmp_path / "llvm-cov-target" / "release" / "switchyard"
    written = coverage.instrumented_stack_config(
        REPO_STACK, tmp_path / "stack.toml", binary, str(tmp_path / "p-%p-%2m.profraw")
    )
    original = load_stack_config(REPO_STACK, paths.root())
    changed = load_stack_config(written, paths.root())
    assert list(changed.services) == list(original.services), "same services, same order"
    for name, service in original.services.items():
        if name != original.proxy:
            assert changed.services[name] == service
    proxy, before = changed.proxy_service(), original.proxy_service()
    assert proxy.command == [str(binary), *before.command[1:]]
    assert proxy.env == {**before.env, "LLVM_PROFILE_FILE": str(tmp_path / "p-%p-%2m.profraw")}
    assert (proxy.build, proxy.health, proxy.port) == (before.build, before.health, before.port)
    assert proxy.config_template == before.config_template


def test_stack_env_forces_an_own_stack_from_the_generated_config(tmp_path: Path) -> None:
    rust = coverage.RustRun(env={"CARGO_TARGET_DIR": str(tmp_path)}, stack_config=tmp_path / "s")
    env = coverage.stack_env(rust)
    assert env["SWITCHYARD_STACK_CONFIG"] == str(tmp_path / "s")
    assert env["SWITCHYARD_REUSE"] == "0"
    # None removes a variable: an external proxy or a named stack would not be instrumented.
    assert env["SWITCHYARD_BASE_URL"] is None and env["SWITCHYARD_STACK"] is None
    assert rust.target_dir == tmp_path


# ---------------------------------------------------------------------- failure logs


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWITCHYARD_STATE_DIR", str(tmp_path / "state"))
    logs = paths.logs_dir()
    for stack_id in ["pytest-42", "pytest-42-cache-a1b2c3", "pytest-420", "default", "other"]:
        (logs / stack_id).mkdir(parents=True)
        (logs / stack_id / "proxy.log").write_text(f"{stack_id} proxy\n")
    return logs


def names(dirs: list[Path]) -> list[str]:
    return [d.name for d in dirs]


def test_run_log_dirs_are_the_run_and_its_private_stacks(state: Path) -> None:
    assert names(failure_logs.run_log_dirs(state, "pytest-42")) == [
        "pytest-42",
        "pytest-42-cache-a1b2c3",
    ]
    assert failure_logs.run_log_dirs(state / "absent", "pytest-42") == []


def test_used_log_dirs_follow_how_the_run_found_its_stack(state: Path) -> None:
    assert failure_logs.used_log_dirs({"SWITCHYARD_BASE_URL": "http://x"}, "pytest-42") == []
    assert names(failure_logs.used_log_dirs({"SWITCHYARD_STACK": "other"}, "pytest-42")) == [
        "other"
    ]
    own = failure_logs.used_log_dirs({}, "pytest-42")
    assert names(own) == ["pytest-42", "pytest-42-cache-a1b2c3"]
    # No stack of its own: it reused the `invoke up` stack, unless reuse was off.
    assert names(failure_logs.used_log_dirs({}, "pytest-7")) == ["default"]
    assert failure_logs.used_log_dirs({"SWITCHYARD_REUSE": "0"}, "pytest-7") == []


def test_collect_copies_each_stack_and_skips_vanished_ones(state: Path, tmp_path: Path) -> None:
    destination = tmp_path / "failure-logs" / "mock"
    copies = failure_logs.collect([state / "pytest-42", state / "gone"], destination)
    assert copies == [destination / "pytest-42"]
    assert (destination / "pytest-42" / "proxy.log").read_text() == "pytest-42 proxy\n"


@pytest.mark.slow
@pytest.mark.parametrize(("outcome", "copied"), [("assert False", True), ("pass", False)])
def test_plugin_copies_the_run_logs_only_when_the_run_fails(
    state: Path, tmp_path: Path, outcome: str, copied: bool
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_it.py").write_text(f"def test_it():\n    {outcome}\n")
    destination = tmp_path / "failure-logs" / "unit"
    (destination / "stale").mkdir(parents=True)
    # The inner run picks its stacks by itself, whatever stack this run was given (as
    # `invoke setup-and-test` gives its tiers one with SWITCHYARD_STACK).
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name
        not in {"SWITCHYARD_STACK", "SWITCHYARD_BASE_URL", "SWITCHYARD_REUSE", "PYTEST_ADDOPTS"}
    }
    env = {
        **inherited,
        # Only the plugin under test: the installed ones (the fuzzers') cost seconds to import.
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "SWITCHYARD_STATE_DIR": str(state.parent),
        "SWITCHYARD_PYTEST_OWNER": "42",
        failure_logs.DESTINATION_ENV: str(destination),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "harness.pytest.failure_logs",
            "-p",
            "no:cacheprovider",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == (1 if copied else 0), done.stdout + done.stderr
    assert not (destination / "stale").exists(), "logs of an earlier run are cleared"
    if copied:
        assert sorted(p.name for p in destination.iterdir()) == [
            "pytest-42",
            "pytest-42-cache-a1b2c3",
        ]
        assert f"server logs of 2 stack(s) copied to {destination}" in done.stdout
    else:
        assert not destination.exists() or not any(destination.iterdir())


def test_pytest_reporting_names_junit_and_failure_logs_after_the_session() -> None:
    args, env = nox_support.pytest_reporting("reliability-2", "3.12")
    reports = paths.reports_dir()
    assert f"--junitxml={reports / 'junit-reliability-2-py3.12.xml'}" in args
    assert args[-2:] == ["-p", "harness.pytest.failure_logs"]
    assert env == {failure_logs.DESTINATION_ENV: str(reports / "failure-logs" / "reliability-2")}


# ---------------------------------------------------------------------- tools


def test_go_module_version_is_the_main_module_line() -> None:
    lines = [
        "/x/actionlint: go1.26.8",
        "\tpath\tgithub.com/rhysd/actionlint/cmd/actionlint",
        "\tmod\tgithub.com/rhysd/actionlint\tv1.7.12\th1:abc=",
        "\tdep\tgithub.com/bmatcuk/doublestar/v4\tv4.10.0\th1:def=",
    ]
    assert toolchain.go_module_version(lines) == "v1.7.12"
    assert toolchain.go_module_version(lines[:2]) is None


def test_llvm_tools_from_the_environment_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("llvm-cov", "llvm-profdata"):
        (tmp_path / name).write_text("")
    monkeypatch.setenv("LLVM_COV", str(tmp_path / "llvm-cov"))
    monkeypatch.setenv("LLVM_PROFDATA", str(tmp_path / "llvm-profdata"))
    assert toolchain.llvm_tools() == {
        "LLVM_COV": str(tmp_path / "llvm-cov"),
        "LLVM_PROFDATA": str(tmp_path / "llvm-profdata"),
    }
    monkeypatch.setenv("LLVM_PROFDATA", str(tmp_path / "absent"))
    with pytest.raises(toolchain.ToolMissing, match="absent"):
        toolchain.llvm_tools()
    # A wrong setting is the user's choice: it is reported, never "fixed" with apt-get.
    with pytest.raises(toolchain.ToolMissing):
        toolchain.ensure_llvm_tools(lambda _: pytest.fail("must not install"))


def test_actionlint_lives_in_the_project_tools_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_STATE_DIR", str(tmp_path))
    assert toolchain.tools_bin() == tmp_path / "tools" / "bin"
    assert toolchain.installed_go_module_version(tmp_path / "tools" / "bin" / "actionlint") is None
