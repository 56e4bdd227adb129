"""Killing the orchestrator: `invoke` is run as a user would, then sent SIGINT, SIGTERM or
SIGKILL during the build, during startup before health, while the tests run, and during
teardown. Afterwards no server may be left running and no PID file may remain; after a SIGKILL,
the next `invoke status` must find the orphans and clean them up.

The stacks here are toy servers from a throwaway stack file, under a throwaway state
directory, so these tests never touch a real stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from harness.pytest import strangers
from harness.pytest.procs import TOY
from harness.pytest.strangers import Strangers
from harness.runtime import paths
from harness.runtime.poll import WaitTimeout, wait_until
from harness.runtime.process import OWNER_ENV

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    # A nested run (the tests `setup-and-test` starts) must not start chaos of its own.
    pytest.mark.skipif("SWITCHYARD_CHAOS_NESTED" in os.environ, reason="nested chaos run"),
]

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
WAIT = 30.0


@dataclass
class Scene:
    """A throwaway stack file and state directory, and a unique service name to search for."""

    state: Path
    config: Path
    service: str
    # Every `invoke` this scene ran: ended by PID at the end of the test, whatever happened.
    invocations: Strangers = field(default_factory=Strangers)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SWITCHYARD_STATE_DIR": str(self.state),
            "SWITCHYARD_STACK_CONFIG": str(self.config),
            "SWITCHYARD_CHAOS_NESTED": "1",
            "NO_COLOR": "1",
        }

    def invoke(self, *args: str) -> subprocess.Popen[bytes]:
        # The user's terminal: a raw process we signal, not one the harness manages.
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "invoke.out", "ab") as output:
            return self.invocations.start(
                sys.executable,
                "-m",
                "invoke",
                *args,
                cwd=paths.root(),
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        """What every `invoke` of this scene printed, for failure messages."""
        try:
            return (self.state / "invoke.out").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def run(self, *args: str) -> int:
        return self.invoke(*args).wait(timeout=WAIT)

    def servers(self) -> list[psutil.Process]:
        """Live processes of this scene's service (found by the marker every server carries)."""
        found = []
        for proc in psutil.process_iter():
            try:
                if f"/{self.service}/" in proc.environ().get(OWNER_ENV, "") and (
                    proc.status() != psutil.STATUS_ZOMBIE
                ):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def pid_files(self) -> list[Path]:
        return sorted(self.state.rglob("*.pid"))


def scene_with(tmp_path: Path, *flags: str, build: str = "", stop_grace: float = 5.0) -> Scene:
    service = f"toy_{uuid.uuid4().hex[:10]}"
    extra = "".join(f', "{flag}"' for flag in flags)
    build_line = f"build = {build}\n" if build else ""
    config = tmp_path / "stack.toml"
    config.write_text(
        f'[stack]\nproxy = "{service}"\n\n[services.{service}]\n'
        f'command = ["${{python}}", "{TOY}", "${{port}}"{extra}]\n'
        f'port = "pick"\nhealth = "tcp"\nstartup_timeout = 60\nstop_grace = {stop_grace}\n'
        + build_line
    )
    return Scene(tmp_path / "state", config, service)


def eventually(
    condition: Callable[[], object],
    what: str,
    within: float = WAIT,
    orchestrator: subprocess.Popen[bytes] | None = None,
    scene: Scene | None = None,
) -> None:
    """Wait for a condition, failing at once (with invoke's output) if invoke already exited."""

    def reached() -> object:
        value = condition()
        if not value and orchestrator is not None and orchestrator.poll() is not None:
            pytest.fail(f"invoke exited ({orchestrator.returncode}) before {what}{said()}")
        return value

    def said() -> str:
        return f"\n--- invoke said ---\n{scene.output()}" if scene else ""

    try:
        wait_until(reached, what=what, timeout=within, cap=0.02)
    except WaitTimeout as error:
        raise AssertionError(f"timed out waiting for {what}{said()} ({error})") from None


def children_named(parent: subprocess.Popen[bytes], needle: str) -> list[psutil.Process]:
    try:
        procs = psutil.Process(parent.pid).children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in procs if needle in " ".join(_cmdline(p))]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def interrupt(orchestrator: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    strangers.kill(orchestrator.pid, sig)
    orchestrator.wait(timeout=WAIT)


def assert_clean_after(scene: Scene, sig: signal.Signals) -> None:
    """After INT/TERM nothing is left at once; after KILL, `invoke status` cleans up."""
    if sig == signal.SIGKILL:
        assert scene.run("status") == 0
    eventually(lambda: not scene.servers(), "the servers to be gone", within=10)
    assert scene.servers() == [], "orphans left running"
    assert scene.pid_files() == []


@pytest.fixture
def leftovers() -> Iterator[list[Scene]]:
    """Whatever a failed test leaves behind is stopped here, by the harness, not by the test."""
    scenes: list[Scene] = []
    yield scenes
    for scene in scenes:
        scene.run("down")
        scene.invocations.close()
        for proc in scene.servers():
            strangers.kill(proc.pid)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_killed_during_startup_before_health(
    tmp_path: Path, sig: signal.Signals, leftovers
) -> None:
    scene = scene_with(tmp_path, "--no-listen")
    leftovers.append(scene)
    orchestrator = scene.invoke("up")
    eventually(scene.pid_files, "the server's PID file", orchestrator=orchestrator, scene=scene)
    interrupt(orchestrator, sig)
    assert_clean_after(scene, sig)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_killed_during_the_build(tmp_path: Path, sig: signal.Signals, leftovers) -> None:
    marker = f"chaos-build-{uuid.uuid4().hex[:8]}"
    build = f'["{sys.executable}", "-c", "import time; time.sleep(60)", "{marker}"]'
    scene = scene_with(tmp_path, build=build)
    leftovers.append(scene)
    orchestrator = scene.invoke("build")
    eventually(
        lambda: children_named(orchestrator, marker),
        "the build to start",
        orchestrator=orchestrator,
        scene=scene,
    )
    [builder] = children_named(orchestrator, marker)
    interrupt(orchestrator, sig)
    eventually(
        lambda: not builder.is_running() or builder.status() == psutil.STATUS_ZOMBIE,
        "the build to stop",
        within=10,
    )
    assert_clean_after(scene, sig)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_killed_while_the_tests_run(tmp_path: Path, sig: signal.Signals, leftovers) -> None:
    scene = scene_with(tmp_path)
    leftovers.append(scene)
    orchestrator = scene.invoke("setup-and-test", "--workers", "1")
    eventually(
        lambda: children_named(orchestrator, "pytest"),
        "the tests to start",
        orchestrator=orchestrator,
        scene=scene,
    )
    assert scene.servers(), "the stack is up while the tests run"
    interrupt(orchestrator, sig)
    eventually(lambda: not children_named(orchestrator, "pytest"), "pytest to stop", within=10)
    assert_clean_after(scene, sig)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_killed_during_teardown(tmp_path: Path, sig: signal.Signals, leftovers) -> None:
    # A server that ignores SIGTERM keeps `down` waiting out its grace period: the window.
    scene = scene_with(tmp_path, "--ignore-term", stop_grace=3.0)
    leftovers.append(scene)
    assert scene.run("up") == 0
    log = scene.state / "logs" / "default" / f"{scene.service}.log"
    orchestrator = scene.invoke("down")
    eventually(
        lambda: "ignoring SIGTERM" in log.read_text(),
        "down to be waiting",
        within=10,
        orchestrator=orchestrator,
        scene=scene,
    )
    interrupt(orchestrator, sig)
    if sig == signal.SIGKILL:
        # A persistent stack stays up when `down` dies: the next `down` finishes the job.
        assert scene.run("down") == 0
    eventually(lambda: not scene.servers(), "the servers to be gone", within=10)
    assert scene.pid_files() == []


def test_second_up_reports_the_running_stack(tmp_path: Path, leftovers) -> None:
    scene = scene_with(tmp_path)
    leftovers.append(scene)
    assert scene.run("up") == 0
    [server] = scene.servers()
    assert scene.run("up") == 1
    assert [p.pid for p in scene.servers()] == [server.pid], "no second stack was started"
    assert scene.run("down") == 0
    assert scene.servers() == [] and scene.pid_files() == []
