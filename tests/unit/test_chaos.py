"""Killing the orchestrator: `invoke` is run as a user would, then sent SIGINT, SIGTERM or
SIGKILL during the build, during startup before health, while the tests run, and during
teardown. Afterwards no server may be left running and no PID file may remain; after a SIGKILL,
the next `invoke status` must find the orphans and clean them up.

The stacks here are toy servers from a throwaway stack file, under a throwaway state
directory, so these tests never touch a real stack.
"""

from __future__ import annotations

import contextlib
import functools
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
from harness.runtime import owners, paths
from harness.runtime.poll import WaitTimeout, wait_until
from harness.runtime.process import OWNER_ENV

# Every process a scene starts inherits this tag: the count of what is left after a run does
# not rely on the harness's own marker, and never mistakes another test's servers for ours.
SCENE_ENV = "SWITCHYARD_CHAOS_SCENE"
# What runs a server of this project: the mock, the proxy's binary, Redis, the toy server.
SERVER_EXECUTABLES = ("harness.mock", "release/switchyard", "redis-server", TOY)

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
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Every `invoke` this scene ran: ended by PID at the end of the test, whatever happened.
    invocations: Strangers = field(default_factory=Strangers)

    @property
    def env(self) -> dict[str, str]:
        # A user's terminal, not this run: what the scene starts is owned by its own commands
        # and registered in its own state directory.
        ours = {owners.RUN_OWNER_ENV, owners.REGISTRY_ENV}
        inherited = {k: v for k, v in os.environ.items() if k not in ours}
        return {
            **inherited,
            "SWITCHYARD_STATE_DIR": str(self.state),
            "SWITCHYARD_STACK_CONFIG": str(self.config),
            "SWITCHYARD_CHAOS_NESTED": "1",
            "NO_COLOR": "1",
            SCENE_ENV: self.tag,
        }

    def invoke(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        sigint: signal.Handlers = signal.SIG_DFL,
    ) -> subprocess.Popen[bytes]:
        """`invoke` as a user's terminal runs it: a raw process we signal, not one the harness
        manages. SIGINT's disposition is set explicitly, not inherited from whatever runs this
        suite (a background job of a non-interactive shell has it ignored): the default, as in
        a terminal, or ignored, as in such a job."""
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "invoke.out", "ab") as output:
            return self.invocations.start(
                sys.executable,
                "-m",
                "invoke",
                *args,
                cwd=paths.root(),
                env={**self.env, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=functools.partial(signal.signal, signal.SIGINT, sigint),
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

    def processes(self) -> list[psutil.Process]:
        """Every live process this scene started, at any depth (zombies are over), except Redis,
        which overwrites its environment (`left_running` finds it by its folder)."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get(SCENE_ENV) == self.tag and (
                    proc.status() != psutil.STATUS_ZOMBIE
                ):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def left_running(self) -> dict[str, list[str]]:
        """What is left of this scene: processes carrying the harness's marker, and processes
        running one of the project's servers (whatever their environment says, if their command
        line names the scene's directory)."""
        scene_dir = str(self.state.parent)
        by_marker, by_executable = [], []
        for proc in psutil.process_iter():
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                environ = proc.environ()
                line = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            ours = environ.get(SCENE_ENV) == self.tag
            if ours and OWNER_ENV in environ:
                by_marker.append(f"{proc.pid} {environ[OWNER_ENV]}: {line}")
            runs_a_server = any(executable in line for executable in SERVER_EXECUTABLES)
            # Redis rewrites its command line and environment; it runs in its stack's folder.
            if runs_a_server and (ours or scene_dir in line or scene_dir in _cwd(proc)):
                by_executable.append(f"{proc.pid}: {line}")
        return {"by marker": by_marker, "by executable": by_executable}


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


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
        # Only processes that carry this scene's tag: nothing else is touched.
        for proc in scene.processes():
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
    eventually(lambda: not running(builder), "the build to stop", within=10)
    assert_clean_after(scene, sig)


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_killed_while_the_tests_run(tmp_path: Path, sig: signal.Signals, leftovers) -> None:
    scene = scene_with(tmp_path)
    leftovers.append(scene)
    orchestrator = scene.invoke("setup-and-test", "--workers", "1")
    # Not "pytest" alone: the toy server's path has it too, and it starts before the tests.
    eventually(
        lambda: children_named(orchestrator, "-m pytest"),
        "the tests to start",
        orchestrator=orchestrator,
        scene=scene,
    )
    tests = children_named(orchestrator, "-m pytest")
    assert scene.servers(), "the stack is up while the tests run"
    interrupt(orchestrator, sig)
    eventually(lambda: not any(map(running, tests)), "pytest to stop", within=10)
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


# What each phase runs of the tiers (PYTEST_ADDOPTS narrows both, so the moment comes soon), and
# what the test's own server runs: in the unit tier, the mock-wire tests, whose module holds a
# mock of its own (tests/unit/conftest.py); in the mock tier (no unit test selected), gateway
# tests, which start private proxies.
PHASES = {
    "unit": ("test_mock_faults or test_mock_fidelity", "harness.mock"),
    "mock": ("test_gw_", "release/switchyard"),
}


@pytest.mark.built_proxy
@pytest.mark.parametrize("phase", PHASES)
def test_killed_while_a_test_holds_a_server_of_its_own(
    tmp_path: Path, phase: str, leftovers
) -> None:
    """SIGKILL to `setup-and-test` and its tests while a test's own server is up (not one of
    the run's stack), then `invoke down`: no process of the run may be left, whether counted by
    the harness's marker or by what they run."""
    selection, executable = PHASES[phase]
    scene = Scene(tmp_path / "state", paths.stack_config(), "mock")
    leftovers.append(scene)
    addopts = f"-k '{selection}' -p no:cacheprovider"
    orchestrator = scene.invoke("setup-and-test", "--workers", "1", env={"PYTEST_ADDOPTS": addopts})

    def tests_own_servers() -> list[psutil.Process]:
        found = []
        for proc in scene.processes():
            with contextlib.suppress(psutil.Error):
                marker = proc.environ().get(OWNER_ENV, "")
                if (
                    marker
                    and not marker.startswith("setup-and-test-")
                    and (executable in " ".join(proc.cmdline()))
                ):
                    found.append(proc)
        return found

    eventually(
        tests_own_servers,
        f"a {phase}-tier test's own server",
        within=180,
        orchestrator=orchestrator,
        scene=scene,
    )
    # The run that dies with invoke: pytest and its workers, in pytest's session (each server
    # has a session of its own). They are SIGKILLed too, as a cancelled CI job or the OOM
    # killer would: then no fixture's teardown runs, for sure (when only invoke is killed,
    # pytest usually manages to stop its workers, and they their servers).
    [controller] = [p for p in _descendants(orchestrator) if _cmdline(p)[1:3] == ["-m", "pytest"]]
    run = [p for p in _descendants(orchestrator) if _session(p) == controller.pid]
    interrupt(orchestrator, signal.SIGKILL)
    for proc in run:
        strangers.kill(proc.pid)
    eventually(lambda: not [p for p in run if _alive(p)], "the killed run to end", within=30)
    assert scene.run("down") == 0, scene.output()
    with contextlib.suppress(AssertionError):
        # What is stopped is gone once it is reaped: wait a little, then count.
        eventually(lambda: not scene.processes(), "every process of the run to be gone", 10)
    assert scene.left_running() == {"by marker": [], "by executable": []}
    assert [_cmdline(proc) for proc in scene.processes()] == []
    assert scene.pid_files() == []


def _descendants(parent: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return psutil.Process(parent.pid).children(recursive=True)
    except psutil.Error:
        return []


def _cwd(proc: psutil.Process) -> str:
    try:
        return proc.cwd()
    except psutil.Error:
        return ""


def _session(proc: psutil.Process) -> int | None:
    try:
        return os.getsid(proc.pid)
    except OSError:
        return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
