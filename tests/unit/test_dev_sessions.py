"""What the nox sessions and invoke tasks delegate to `harness.dev`: the sessions' steps
(`nox_support`), the reliability runs, the coverage flow, and the tasks' error handling and
argparse-derived options (`invoke_support`). nox itself is not needed: a fake session records."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import Any

import pytest
from _pytest.mark.expression import Expression
from invoke import Context, Exit

from harness.checks import smoke_cli
from harness.dev import coverage, invoke_support, nox_support, reliability
from harness.perf import bench_options
from harness.runtime.config import ConfigError
from harness.runtime.process import ProcessError

REPO = Path(__file__).resolve().parents[2]


class CommandFailed(Exception):
    """Stands in for nox.command.CommandFailed."""


class Venv:
    location = "/tmp/venv"


class FakeSession:
    """What the helpers use of a nox session; `run` fails for commands containing `failing`."""

    def __init__(self, posargs: list[str] | None = None, failing: str = "") -> None:
        self.posargs = posargs or []
        self.python = "3.12"
        self.virtualenv = Venv()
        self.failing = failing
        self.runs: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.logged: list[str] = []
        self.errors: list[str] = []

    def run(self, *args: str, **kwargs: Any) -> None:
        self.runs.append((args, kwargs))
        if self.failing and self.failing in args:
            raise CommandFailed(" ".join(args))

    run_install = run

    def log(self, message: str) -> None:
        self.logged.append(message)

    def error(self, message: str) -> None:
        self.errors.append(message)
        raise RuntimeError(message)


@pytest.fixture(autouse=True)
def fake_nox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nox_support, "command_failed", lambda: CommandFailed)


def junit_names(session: FakeSession) -> list[str]:
    return [
        Path(word.split("=", 1)[1]).name
        for args, _ in session.runs
        for word in args
        if word.startswith("--junitxml=")
    ]


# --------------------------------------------------------------------------- session steps


@pytest.mark.parametrize(
    ("environment", "downloads"), [({}, "never"), ({"UV_PYTHON_DOWNLOADS": "manual"}, "manual")]
)
def test_sync_installs_from_the_lock_and_downloads_no_interpreter(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], downloads: str
) -> None:
    monkeypatch.delenv("UV_PYTHON_DOWNLOADS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    session = FakeSession()
    nox_support.sync(session, "test", "bench")
    [(args, kwargs)] = session.runs
    assert args == (
        *("uv", "sync", "--frozen", "--no-default-groups", "--inexact"),
        *("--group", "test", "--group", "bench"),
    )
    assert kwargs["env"] == {
        "UV_PROJECT_ENVIRONMENT": "/tmp/venv",
        "UV_PYTHON_DOWNLOADS": downloads,
    }


def test_pytest_reports_and_takes_the_arguments_after_the_double_dash() -> None:
    session = FakeSession(["-k", "x"])
    nox_support.pytest(session, "unit", "tests/unit", env={"EXTRA": "1"})
    [(args, kwargs)] = session.runs
    assert args[:6] == ("pytest", "tests/unit", "-k", "x", "-n", "auto")
    assert "--durations=10" in args
    assert junit_names(session) == ["junit-unit-py3.12.xml"]
    assert kwargs["env"]["EXTRA"] == "1"
    assert nox_support.FAILURE_LOGS_ENV in kwargs["env"]


def test_the_rust_checks_cover_the_whole_workspace() -> None:
    session = FakeSession()
    nox_support.rust_checks(session)
    commands = [" ".join(args) for args, _ in session.runs]
    manifest = "--manifest-path proxy/Cargo.toml"
    assert commands == [
        f"cargo fmt {manifest} --all --check",
        f"cargo clippy {manifest} --workspace --all-targets -- -D warnings",
        f"cargo test {manifest} --workspace",
    ]
    assert all(kwargs == {"external": True} for _, kwargs in session.runs)


# --------------------------------------------------------------------------- reliability


def test_reliability_runs_three_times_and_names_the_failed_runs() -> None:
    session = FakeSession()
    calls = 0

    def run(*args: str, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        session.runs.append((args, kwargs))
        if calls == 2:
            raise CommandFailed("run 2")

    session.run = run  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        reliability.run(session)
    assert junit_names(session) == [f"junit-reliability-{n}-py3.12.xml" for n in (1, 2, 3)]
    tiers = ("pytest", "tests/unit", "tests/mock", "-m", reliability.MARKERS)
    assert all(args[:5] == tiers for args, _ in session.runs)
    assert session.errors == ["1 of 3 runs failed (run 2)"]
    assert [line for line in session.logged if "run" in line][-1] == "# reliability run 3 of 3"


def test_reliability_passes_when_every_run_passes() -> None:
    session = FakeSession()
    reliability.run(session, runs=2)
    assert len(session.runs) == 2 and session.errors == []


# --------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("tests_fail", [False, True])
def test_coverage_reports_both_languages_even_after_failed_tests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tests_fail: bool
) -> None:
    steps: list[str] = []
    rust = coverage.RustRun(env={"CARGO_TARGET_DIR": str(tmp_path)}, stack_config=tmp_path / "s")
    good = coverage.Figure("Python", "src/harness", 90, 100, 85.0, tmp_path)
    monkeypatch.setattr(coverage, "prepare_rust", lambda session: steps.append("build") or rust)
    monkeypatch.setattr(coverage, "run_rust_tests", lambda session, r: steps.append("cargo test"))
    monkeypatch.setattr(coverage, "report_python", lambda session: steps.append("py") or good)
    monkeypatch.setattr(coverage, "report_rust", lambda session, r: steps.append("rs") or good)
    session = FakeSession(failing="pytest" if tests_fail else "")
    if tests_fail:
        with pytest.raises(RuntimeError):
            coverage.measure(session, "tests/unit")
        assert session.errors == ["the tests failed"]
    else:
        coverage.measure(session, "tests/unit")
    assert steps == ["build", "cargo test", "py", "rs"]
    erase, tests = session.runs
    assert erase[0] == ("coverage", "erase")
    assert tests[0][:5] == ("coverage", "run", "-m", "pytest", "tests/unit")
    assert tests[1]["env"]["SWITCHYARD_STACK_CONFIG"] == str(tmp_path / "s")
    assert len(session.logged) == 2, "a line per language"


# --------------------------------------------------------------------------- invoke tasks


@pytest.mark.parametrize(
    ("error", "code"),
    [(ProcessError("no"), 1), (ConfigError("f.toml", "k", "bad"), 1), (KeyboardInterrupt(), 130)],
)
def test_guarded_turns_the_harness_errors_into_exit_codes(error: BaseException, code: int) -> None:
    def fail() -> None:
        raise error

    with pytest.raises(Exit) as exited:
        invoke_support.guarded(True, fail)
    assert exited.value.code == code


@pytest.mark.parametrize(("returned", "code"), [(0, None), (None, None), (3, 3), (130, 130)])
def test_exit_with_exits_with_a_non_zero_result(returned: int | None, code: int | None) -> None:
    if code is None:
        invoke_support.exit_with(True, lambda: returned)
        return
    with pytest.raises(Exit) as exited:
        invoke_support.exit_with(True, lambda: returned)
    assert exited.value.code == code


def test_a_parser_task_has_the_parsers_options_and_help() -> None:
    task = invoke_support.ParserTask(lambda c, argv: argv, parser=bench_options.parser())
    arguments = {argument.name: argument for argument in task.get_arguments()}
    assert "help" not in arguments, "invoke's own --help stays invoke's"
    assert set(arguments) == {
        *(action.dest for action in invoke_support.options(bench_options.parser())),
        invoke_support.EXTRA,
    }
    assert arguments["quick"].kind is bool and arguments["quick"].default is False
    assert arguments["proxy_cmd"].kind is list
    assert arguments["rates"].default is None
    assert arguments["rates"].help and "comma-separated" in arguments["rates"].help


def test_a_parser_task_passes_a_command_line_its_parser_reads_back() -> None:
    task = invoke_support.ParserTask(lambda c, argv: argv, parser=bench_options.parser())
    values = {action.dest: None for action in invoke_support.options(bench_options.parser())}
    values.update(quick=True, no_build=False, proxy_cmd=["a={port}", "b={port}"], rates="100,200")
    argv = task(Context(), **values, args="--concurrency 64")
    assert argv == [
        *("--quick", "--rates", "100,200"),
        *("--proxy-cmd", "a={port}", "--proxy-cmd", "b={port}"),
        *("--concurrency", "64"),
    ]
    options = bench_options.parse_args(argv)
    assert (options.quick, options.rates, options.concurrency) == (True, [100.0, 200.0], 64)
    assert [other.name for other in options.others] == ["a", "b"]
    assert options.build, "--no-build was not given"


def test_unset_task_options_leave_the_parsers_defaults() -> None:
    values = {action.dest: None for action in invoke_support.options(smoke_cli.parser())}
    assert invoke_support.argv(smoke_cli.parser(), values) == []
    assert smoke_cli.parse_args([]).requests == 20


# (the session's arguments, the ones after `--`, what pytest gets)
PYTEST_ARGUMENTS = [
    pytest.param(["tests/mock", "--quick"], [], ["tests/mock", "--quick", "-n", "auto"], id="none"),
    pytest.param(
        ["tests/mock"], ["-m", "not slow"], ["tests/mock", "-m", "not slow", "-n", "auto"],
        id="a-marker-keeps-the-paths-and-the-workers",
    ),
    pytest.param(
        ["tests/mock", "--quick"], ["tests/mock/test_chat.py"],
        ["--quick", "tests/mock/test_chat.py", "-n", "auto"], id="a-file-replaces-the-paths",
    ),
    pytest.param(
        ["tests/mock"], ["tests/mock/test_chat.py::test_non_streaming", "-n", "2"],
        ["tests/mock/test_chat.py::test_non_streaming", "-n", "2"], id="a-test-id-and-workers",
    ),
    pytest.param(["tests/unit"], ["-n0"], ["tests/unit", "-n0"], id="glued-worker-count"),
    pytest.param(
        ["tests/mock", "-n", "0"], ["-n", "2"], ["tests/mock", "-n", "0", "-n", "2"],
        id="the-sessions-workers-and-theirs-last",
    ),
    pytest.param(
        ["tests/unit"], ["-p", "no:xdist"], ["tests/unit", "-p", "no:xdist"], id="xdist-off"
    ),
    pytest.param(
        ["tests/unit"], ["-k", "tests"], ["tests/unit", "-k", "tests", "-n", "auto"],
        id="an-option-value-is-no-path",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("defaults", "posargs", "expected"), PYTEST_ARGUMENTS)
def test_arguments_after_the_double_dash_narrow_the_run_and_keep_its_workers(
    defaults: list[str], posargs: list[str], expected: list[str]
) -> None:
    assert nox_support.pytest_arguments(defaults, posargs) == expected


@pytest.mark.parametrize("module", nox_support.FUZZ_MODULES)
def test_the_quick_loop_skips_only_modules_whose_tests_are_all_slow(module: str) -> None:
    """`nox -s mock` leaves the fuzz modules out uncollected; that drops nothing `--quick`
    would run only while every test there is marked slow, module-wide."""
    tree = ast.parse((REPO / module).read_text())
    [marks] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
    ]
    assert "pytest.mark.slow" in ast.unparse(marks)


# Every set of the markers that decide where a unit test runs.
SELECTING_MARKERS = ("slow", "chaos", "built_proxy")
MARKER_SETS = [
    set(chosen)
    for count in range(len(SELECTING_MARKERS) + 1)
    for chosen in itertools.combinations(SELECTING_MARKERS, count)
]


def selects(expression: str, marks: set[str]) -> bool:
    return Expression.compile(expression).evaluate(lambda name, **_: name in marks)


def marker_expression(args: tuple[str, ...]) -> str:
    return args[args.index("-m") + 1]


@pytest.mark.parametrize("marks", MARKER_SETS, ids=lambda marks: "+".join(sorted(marks)) or "-")
def test_the_quick_unit_loop_leaves_out_only_slow_tests_and_unit_full_only_built_proxy(
    marks: set[str],
) -> None:
    """`nox -s unit` runs a test unless it is slow (or built_proxy); `nox -s unit_full`, which CI
    runs, unless it is built_proxy, and those reliability (a chaos test) or coverage runs."""
    quick = selects(marker_expression(nox_support.UNIT_QUICK), marks)
    full = selects(marker_expression(nox_support.UNIT_FULL), marks)
    assert quick == (full and "slow" not in marks)
    assert full == ("built_proxy" not in marks)
    if not full and "chaos" in marks:
        assert selects(reliability.MARKERS, marks)
