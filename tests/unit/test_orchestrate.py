"""What the Invoke tasks do (`harness.dev.orchestrate`), on real toy stacks in a private scene:
up, status, logs, down, build, setup, clean, test and setup-and-test, and their error paths."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.dev import orchestrate
from harness.pytest.procs import gone
from harness.pytest.scene import Scene, make_scene, toy_service
from harness.runtime import stack
from harness.runtime.config import ConfigError
from harness.runtime.process import AlreadyRunning, ProcessError, ServiceStartError
from harness.runtime.toolchain import ToolMissing


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    made = make_scene(tmp_path, monkeypatch)
    yield made
    made.stop_everything()


def live_pids(stack_id: str = stack.DEFAULT_STACK) -> dict[str, int]:
    the_stack = stack.load(stack_id)
    return {name: service.record.pid for name, service in the_stack.services().items()}


# --------------------------------------------------------------------------- up, status, down


def test_up_status_down(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    scene.write_config(toy_service("back") + toy_service("front"))
    orchestrate.up()
    said = capsys.readouterr().out
    pids = live_pids()
    assert set(pids) == {"back", "front"}
    assert f"back: PID {pids['back']}" in said
    assert "stack 'default' is up: all healthy" in said
    front_url = stack.load().url("front")
    assert f"proxy: {front_url}" in said

    assert orchestrate.status() is True
    table = capsys.readouterr().out
    assert "stack default" in table
    assert table.count("healthy") == 2
    assert str(pids["front"]) in table

    orchestrate.down()
    said = capsys.readouterr().out
    assert "stopped front, back" in said
    assert all(gone(pid) for pid in pids.values())
    assert scene.pid_files() == []

    assert orchestrate.status() is False
    assert "no stack is running" in capsys.readouterr().out
    orchestrate.down()
    assert "nothing was running" in capsys.readouterr().out


def test_second_up_is_refused_and_leaves_the_stack_alone(scene: Scene) -> None:
    scene.write_config(toy_service("front"))
    orchestrate.up()
    pids = live_pids()
    with pytest.raises(AlreadyRunning, match="stack 'default' is already up"):
        orchestrate.up()
    assert live_pids() == pids


def test_status_shows_a_dead_service_as_down_and_cleans_its_pid_file(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.write_config(toy_service("back") + toy_service("front"))
    orchestrate.up()
    back = live_pids()["back"]
    # Our own toy server, crashing behind the harness's back.
    psutil.Process(back).kill()
    assert gone(back)
    capsys.readouterr()

    assert orchestrate.status() is False, "the default stack is not healthy"
    said = capsys.readouterr().out
    assert "cleaned up stale PID file" in said and "back.pid" in said
    assert "down" in said and "healthy" in said
    assert [path.name for path in scene.pid_files()] == ["front.pid"]


def test_stacks_of_other_live_runs_are_shown_and_outlive_down(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.write_config(toy_service("front"))
    other = stack.load("other-run", owner_pid=os.getpid())
    other.up()
    pids = live_pids("other-run")

    assert orchestrate.status() is False, "no default stack"
    assert "stack other-run" in capsys.readouterr().out
    orchestrate.down()
    said = capsys.readouterr().out
    assert "nothing was running" in said
    assert "still running, owned by another live run: stack 'other-run'" in said
    assert live_pids("other-run") == pids


def test_sweep_reports_what_it_cleaned_then_that_nothing_is_left(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.write_config(toy_service("front"))
    owner = psutil.Popen([sys.executable, "-c", "pass"])
    the_stack = stack.load("orphan", owner_pid=owner.pid)
    the_stack.up()
    pids = live_pids("orphan")
    owner.wait()

    orchestrate.sweep()
    said = capsys.readouterr().out
    assert "cleaned up orphaned stack 'orphan' (front)" in said
    assert "no orphans or stale PID files left" in said
    assert all(gone(pid) for pid in pids.values())
    orchestrate.sweep(quiet=True)
    assert capsys.readouterr().out == ""


def test_a_taken_fixed_port_is_a_clear_error_and_nothing_is_left(scene: Scene) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        scene.write_config(toy_service("back") + toy_service("front", port=str(port)))
        with pytest.raises(ServiceStartError) as caught:
            orchestrate.up()
    message = str(caught.value)
    assert message.startswith("front: ")
    assert f"port {port} is already in use (configured in {scene.config})" in message
    assert scene.pid_files() == [], "back, started first, was stopped again"
    assert stack.list_stacks() == []


def test_a_server_that_dies_at_startup_reports_its_exit_code_and_log(scene: Scene) -> None:
    scene.write_config(toy_service("front", "--exit-now", "7"))
    with pytest.raises(ServiceStartError) as caught:
        orchestrate.up()
    message = str(caught.value)
    assert "front: exited during startup (exit code 7)" in message
    assert "toy server giving up on purpose" in message, "the tail of its log"
    assert scene.pid_files() == []


def test_a_bad_stack_file_names_the_file_and_the_key(scene: Scene) -> None:
    scene.write_config(toy_service("front", port='"any"'))
    with pytest.raises(ConfigError) as caught:
        orchestrate.up()
    assert str(caught.value).startswith(f"{scene.config}: services.front.port: ")
    assert stack.list_stacks() == []


# --------------------------------------------------------------------------- logs


def test_logs_print_the_tail_of_each_server_log(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.write_config(toy_service("back") + toy_service("front"))
    orchestrate.up()
    ports = {name: service.port for name, service in stack.load().services().items()}
    capsys.readouterr()

    orchestrate.logs(None, 5)
    said = capsys.readouterr().out
    assert f"--- back: {scene.state / 'logs' / 'default' / 'back.log'}" in said
    assert f"toy server starting on port {ports['back']}" in said
    assert f"toy server starting on port {ports['front']}" in said

    orchestrate.logs("front", 5)
    said = capsys.readouterr().out
    assert "--- front:" in said and "--- back:" not in said

    # Logs outlive the stack: after `down` they are still there to read.
    orchestrate.down()
    capsys.readouterr()
    orchestrate.logs("back", 1)
    assert f"toy server starting on port {ports['back']}" in capsys.readouterr().out


def test_logs_of_a_stack_that_never_ran_say_so(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.write_config(toy_service("front"))
    orchestrate.logs(None, 10)
    assert "(no log at" in capsys.readouterr().out


# --------------------------------------------------------------------------- build and setup


def test_build_runs_each_build_command_in_the_root(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    made = "built.txt"
    build = [sys.executable, "-c", f"open('{made}', 'w').write('ok')"]
    scene.write_config(toy_service("back") + toy_service("front", build=build))
    orchestrate.build()
    assert (scene.root / made).read_text() == "ok", "run with the repository root as cwd"
    said = capsys.readouterr().out
    assert "building front:" in said and "building back" not in said
    assert "build complete" in said


def test_a_failed_build_reports_the_service_and_exit_code(scene: Scene) -> None:
    build = [sys.executable, "-c", "import sys; sys.exit(3)"]
    scene.write_config(toy_service("front", build=build))
    with pytest.raises(ProcessError, match=r"building front failed \(exit code 3\)"):
        orchestrate.build()


def test_a_cargo_build_without_cargo_says_how_to_get_it(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(scene.bin))
    scene.write_config(toy_service("front", build=["cargo", "build"]))
    with pytest.raises(ToolMissing, match=r"cargo not found on PATH\. Install Rust with rustup"):
        orchestrate.build()


def test_setup_reports_where_each_tool_is(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uv, cargo = scene.tool("uv"), scene.tool("cargo")
    redis = scene.tool("redis-server")
    monkeypatch.setenv("PATH", str(scene.bin))
    monkeypatch.setenv("SWITCHYARD_REDIS_SERVER", str(redis))
    orchestrate.setup()
    said = capsys.readouterr().out
    assert f"uv at {uv}" in said
    assert f"cargo at {cargo}" in said
    assert f"redis-server at {redis}" in said
    assert "setup complete" in said


def test_setup_without_uv_warns_and_without_cargo_fails(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(scene.bin))
    monkeypatch.setenv("SWITCHYARD_REDIS_SERVER", str(scene.tool("redis-server")))
    with pytest.raises(ToolMissing, match="cargo not found on PATH"):
        orchestrate.setup()
    said = capsys.readouterr().out
    assert "WARN" in said and "uv not found on PATH" in said
    assert "setup complete" not in said


# --------------------------------------------------------------------------- clean


def test_clean_stops_the_stack_and_removes_state_reports_and_build_output(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    scene.write_config(toy_service("front"))
    orchestrate.up()
    pids = live_pids()
    target = scene.root / "proxy" / "target" / "release"
    target.mkdir(parents=True)
    (target / "switchyard").write_text("")
    (scene.root / "reports").mkdir()
    (scene.root / "reports" / "junit-unit.xml").write_text("<testsuites/>")
    kept = scene.root / "proxy" / "src.rs"
    kept.write_text("")

    orchestrate.clean()
    assert all(gone(pid) for pid in pids.values())
    assert not scene.state.exists()
    assert not (scene.root / "reports").exists()
    assert not (scene.root / "proxy" / "target").exists()
    assert kept.exists(), "only the build output goes"
    said = capsys.readouterr().out
    assert f"removed {scene.state}" in said and "clean" in said


# --------------------------------------------------------------------------- test tiers


@pytest.fixture
def light_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested pytest runs load only xdist, not every installed plugin: they start in a blink."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTEST_PLUGINS", "xdist.plugin")
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


def write_test(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))


@pytest.mark.slow
def test_test_runs_pytest_in_the_root_and_returns_its_exit_code(
    scene: Scene, light_pytest: None
) -> None:
    write_test(scene.root / "test_good.py", "def test_good():\n    assert 1 + 1 == 2\n")
    write_test(scene.root / "test_bad.py", "def test_bad():\n    assert 1 + 1 == 3\n")
    assert orchestrate.test("test_good.py -q -p no:cacheprovider") == 0
    assert orchestrate.test("test_bad.py -q -p no:cacheprovider") == 1


TIER_CHECKS_THE_STACK = """
    import os
    from pathlib import Path

    def test_the_tier_runs_against_the_live_stack():
        stack_id = os.environ["SWITCHYARD_STACK"]
        assert stack_id.startswith("setup-and-test-")
        run = Path(os.environ["SWITCHYARD_STATE_DIR"]) / "stacks" / stack_id / "run"
        assert (run / "front.pid").is_file()
"""


def tools_for_setup(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    scene.tool("cargo")
    monkeypatch.setenv("PATH", f"{scene.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SWITCHYARD_REDIS_SERVER", str(scene.tool("redis-server")))


def tiers_for_setup(scene: Scene, monkeypatch: pytest.MonkeyPatch, **tiers: str) -> None:
    """The tools, a one-service stack, and a test file per tier (tests/<tier>/test_<t>.py)."""
    tools_for_setup(scene, monkeypatch)
    scene.write_config(toy_service("front"))
    for tier, body in tiers.items():
        write_test(scene.root / "tests" / tier / f"test_{tier[0]}.py", body)


@pytest.mark.slow
def test_setup_and_test_runs_the_tiers_on_its_own_stack_and_stops_it(
    scene: Scene,
    light_pytest: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(orchestrate.INTEGRATION_ENV, raising=False)
    tiers_for_setup(scene, monkeypatch, unit=TIER_CHECKS_THE_STACK, mock=TIER_CHECKS_THE_STACK)

    assert orchestrate.setup_and_test(workers="0") is True
    said = capsys.readouterr().out
    assert "stack healthy in" in said
    assert "stopped front" in said
    assert "skipped (OPENAI_API_KEY is not set)" in said
    assert "all tiers passed" in said
    assert stack.list_stacks() == [] and scene.pid_files() == []
    assert (scene.root / "reports" / "junit-unit.xml").is_file()
    assert (scene.root / "reports" / "junit-mock.xml").is_file()


@pytest.mark.slow
def test_setup_and_test_reports_a_failed_tier_and_still_stops_the_stack(
    scene: Scene,
    light_pytest: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(orchestrate.INTEGRATION_ENV, "sk-not-a-real-key")
    tiers_for_setup(
        scene,
        monkeypatch,
        unit=TIER_CHECKS_THE_STACK,
        mock="def test_m():\n    assert False\n",
        integration=TIER_CHECKS_THE_STACK,
    )

    assert orchestrate.setup_and_test(workers="0") is False
    said = capsys.readouterr().out
    assert "running the integration tier" in said, "the key is set"
    assert "failed (pytest exit code 1)" in said
    assert f"failed: mock; server logs: {scene.state / 'logs'}" in said
    assert stack.list_stacks() == [] and scene.pid_files() == []
    assert (scene.root / "reports" / "junit-integration.xml").is_file()


def test_setup_and_test_stops_what_it_started_when_a_service_fails(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools_for_setup(scene, monkeypatch)
    scene.write_config(toy_service("back") + toy_service("front", "--exit-now", "5"))
    with pytest.raises(ServiceStartError, match=r"exit code 5"):
        orchestrate.setup_and_test(workers="0")
    assert stack.list_stacks() == [] and scene.pid_files() == []
