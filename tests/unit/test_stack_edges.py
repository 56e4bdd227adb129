"""Less travelled paths of stacks and processes, with real toy servers in a private scene:
restarts, partial stacks, unbuilt services, odd stack metadata, held run locks, foreground
commands that ignore SIGTERM, and the colourless console."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from filelock import FileLock

from harness.pytest import strangers
from harness.pytest.procs import gone
from harness.pytest.scene import Scene, make_scene, toy_service
from harness.runtime import console, stack
from harness.runtime.process import ProcessError, ServiceStartError, attach, port_in_use, run


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    made = make_scene(tmp_path, monkeypatch)
    made.write_config(toy_service("back") + toy_service("front"))
    yield made
    made.stop_everything()


def test_a_partial_stack_shows_the_missing_service_as_down(scene: Scene) -> None:
    the_stack = stack.load("partial")
    the_stack.up(only=["front"])
    assert not the_stack.is_up(), "back is not running"
    rows = {row.name: row for row in the_stack.status()}
    assert rows["front"].healthy and rows["front"].pid
    assert rows["back"] == stack.ServiceStatus(
        "back", None, None, False, None, the_stack.log_path("back")
    )
    with pytest.raises(LookupError, match="service 'back' of stack 'partial' is not running"):
        the_stack.url("back")
    assert the_stack.url("front").startswith("http://127.0.0.1:")


def test_restart_keeps_the_port_and_starts_a_stopped_service(scene: Scene) -> None:
    the_stack = stack.load("restarts")
    first = the_stack.up()["back"]
    again = the_stack.restart_service("back")
    assert again.port == first.port, "a picked port is kept across a restart"
    assert again.record.pid != first.record.pid
    assert gone(first.record.pid)
    assert the_stack.status()[0].healthy

    # Not running at all: a restart is a start.
    again.stop(grace=0.5)
    started = the_stack.restart_service("back")
    assert started.alive() and the_stack.services()["back"].record.pid == started.record.pid


def test_an_unbuilt_service_says_to_build_it_first(scene: Scene) -> None:
    scene.write_config(
        toy_service("back") + '\n[services.front]\ncommand = ["bin/front"]\nbuild = ["make"]\n'
    )
    the_stack = stack.load("unbuilt")
    with pytest.raises(ServiceStartError) as caught:
        the_stack.up()
    message = str(caught.value)
    assert message.startswith("front: ")
    assert f"{scene.root / 'bin' / 'front'} does not exist: build it first" in message
    assert scene.pid_files() == [], "back was stopped again"


def test_a_stack_whose_owner_is_not_an_identity_is_an_orphan(scene: Scene) -> None:
    the_stack = stack.load("odd-owner", owner_pid=os.getpid())
    pid = the_stack.up()["front"].record.pid
    meta_path = the_stack.dir / "stack.json"
    meta = json.loads(meta_path.read_text())
    meta["owner"] = "someone"
    meta_path.write_text(json.dumps(meta))
    assert stack.sweep_orphans() == ["orphaned stack 'odd-owner' (front, back)"]
    assert gone(pid)
    assert stack.list_stacks() == []


def test_a_held_run_lock_outlives_the_sweep(scene: Scene) -> None:
    scene.state.mkdir(parents=True, exist_ok=True)
    path = scene.state / f"pytest-{strangers.exited_pid()}.lock"
    held = FileLock(path)
    held.acquire()
    try:
        stack.sweep_orphans()
        assert path.exists(), "someone holds it: not ours to remove"
    finally:
        held.release()
    stack.sweep_orphans()
    assert not path.exists()


def test_an_attached_service_cannot_be_waited_for(scene: Scene, tmp_path: Path) -> None:
    assert attach(tmp_path / "absent.pid") is None
    the_stack = stack.load("attached")
    service = the_stack.up(only=["front"])["front"]
    found = attach(service.spec.pid_file)
    assert found is not None and found.record == service.record
    with pytest.raises(ProcessError, match="front was not started by this process"):
        found.wait_exit(0.1)
    assert service.port is not None and port_in_use(service.port)


def test_an_interrupted_foreground_command_that_ignores_sigterm_is_killed() -> None:
    pids: list[int] = []

    def stop_at_once(line: str) -> None:
        pids.append(int(line))
        raise RuntimeError("interrupted")

    stubborn = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(30)\n"
    )
    with pytest.raises(RuntimeError, match="interrupted"):
        run([sys.executable, "-c", stubborn], grace=0.2, on_output=stop_at_once)
    [pid] = pids
    assert gone(pid, within=2)
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(pid).status()


def test_disable_color_makes_a_plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(console, "_console", None)
    assert console.console().no_color is False
    console.disable_color()
    assert os.environ["NO_COLOR"] == "1"
    assert console.console().no_color is True
