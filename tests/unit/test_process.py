"""The process manager against real processes: PID files, health polling, ports and stopping."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.pytest import strangers
from harness.pytest.procs import TOY, gone
from harness.runtime import owners
from harness.runtime import process as process_module
from harness.runtime.poll import backoff_delays, wait_until
from harness.runtime.process import (
    OWNER_ENV,
    AlreadyRunning,
    HealthCheck,
    PidFileError,
    PidRecord,
    Service,
    ServiceSpec,
    ServiceStartError,
    _wait_gone,
    attach,
    clean_stale_pid_file,
    deferred_interrupts,
    pick_free_port,
    read_pid_file,
    run,
    signals_as_exceptions,
    start_service,
    stop_record,
    tail,
    write_pid_file,
)


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    """Even when a test fails half-way, every process it started is gone afterwards: they all
    carry the marker of this test's owner."""
    yield
    prefix = f"unit-{tmp_path.name}/"
    for proc in psutil.process_iter():
        if _marker_of(proc).startswith(prefix):
            with contextlib.suppress(psutil.Error):
                proc.kill()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Service]]:
    """Services a test starts; whatever the test does, they are stopped afterwards."""
    services: list[Service] = []
    yield services
    for service in services:
        service.stop(grace=0.5)


def toy_spec(
    tmp_path: Path, *flags: str, name: str = "toy", port: int | None = None
) -> ServiceSpec:
    port = port or pick_free_port()
    return ServiceSpec(
        name=name,
        command=[sys.executable, TOY, str(port), *flags],
        pid_file=tmp_path / "run" / f"{name}.pid",
        log_file=tmp_path / "logs" / f"{name}.log",
        health=HealthCheck("tcp"),
        port=port,
        owner=f"unit-{tmp_path.name}",
        startup_timeout=10,
        stop_grace=0.5,
    )


def a_record(**changes: object) -> PidRecord:
    fields: dict[str, object] = {
        "name": "x",
        "pid": 1,
        "started": 0.0,
        "command": ["x"],
        "port": 1,
        "log": "/tmp/x.log",
        "started_at": 0.0,
        "owner": "t",
    }
    fields.update(changes)
    return PidRecord(**fields)  # type: ignore[arg-type]


def _marker_of(proc: psutil.Process) -> str:
    try:
        return proc.environ().get(OWNER_ENV, "")
    except psutil.Error:
        return ""


# ----------------------------------------------------------------------------- PID files


def test_pid_file_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "run" / "svc.pid"
    record = a_record(pid=4242, command=["a", "b"], port=9999)
    write_pid_file(path, record)
    assert read_pid_file(path) == record
    assert [p.name for p in path.parent.iterdir()] == ["svc.pid"], "no temporary file is left"


@pytest.mark.parametrize("content", ["", "{", "not json", '{"pid": 1}', "[1, 2]"])
def test_broken_pid_file_is_reported_and_cleaned(tmp_path: Path, content: str) -> None:
    path = tmp_path / "svc.pid"
    path.write_text(content)
    with pytest.raises(PidFileError, match=str(path)):
        read_pid_file(path)
    assert clean_stale_pid_file(path) is True
    assert not path.exists()


def test_pid_file_records_identity_and_no_secret(tmp_path: Path, started: list[Service]) -> None:
    spec = toy_spec(tmp_path)
    spec.env = {"TOY_SECRET": "sk-never-in-a-pid-file"}
    started.append(start_service(spec))
    data = json.loads(spec.pid_file.read_text())
    proc = psutil.Process(data["pid"])
    assert data["started"] == owners.started(proc)
    assert data["port"] == spec.port and data["log"] == str(spec.log_file)
    assert data["command"] == spec.command
    assert "sk-never-in-a-pid-file" not in spec.pid_file.read_text()
    assert os.getpgid(proc.pid) == proc.pid, "the service leads its own process group"


def test_pid_file_of_a_dead_process_is_stale(tmp_path: Path, started: list[Service]) -> None:
    spec = toy_spec(tmp_path)
    service = start_service(spec)
    record = service.record
    service.stop()
    write_pid_file(spec.pid_file, record)  # as if a crash had left it behind
    assert attach(spec.pid_file) is None
    assert not spec.pid_file.exists()


def test_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    # A process that is not ours, holding a PID our file names, with another start time.
    with strangers.stranger() as other:
        created = owners.started(psutil.Process(other.pid))
        pid_file = tmp_path / "svc.pid"
        record = a_record(pid=other.pid, started=created - 1000)
        write_pid_file(pid_file, record)
        assert clean_stale_pid_file(pid_file) is True
        assert not pid_file.exists()
        stop_record(record, None, grace=0.2)
        assert other.poll() is None, "the stranger must still be running"


def test_second_start_reports_already_running(tmp_path: Path, started: list[Service]) -> None:
    spec = toy_spec(tmp_path)
    started.append(start_service(spec))
    with pytest.raises(AlreadyRunning, match="already running"):
        start_service(toy_spec(tmp_path))


# ----------------------------------------------------------------------------- health


def test_backoff_starts_in_milliseconds_and_is_capped() -> None:
    delays = backoff_delays()
    first = [next(delays) for _ in range(12)]
    assert first[0] < 0.01
    assert first == sorted(first)
    assert max(first) == 0.25


def test_healthy_service_starts(tmp_path: Path, started: list[Service]) -> None:
    service = start_service(toy_spec(tmp_path))
    started.append(service)
    assert service.alive()
    assert HealthCheck("tcp").probe("127.0.0.1", service.port or 0, 1.0)


def test_service_that_never_gets_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, "--no-listen")
    spec.startup_timeout = 0.5
    with pytest.raises(ServiceStartError, match="not healthy within") as caught:
        start_service(spec)
    assert "toy server starting" in caught.value.log_tail
    assert not spec.pid_file.exists()
    marked = [
        p for p in psutil.process_iter() if _marker_of(p).startswith(f"{spec.owner}/{spec.name}/")
    ]
    assert marked == [], "nothing is left running"


def test_service_that_dies_during_startup_fails_fast_with_code_and_log(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path, "--exit-now", "3")
    with pytest.raises(ServiceStartError) as caught:
        start_service(spec)
    error = caught.value
    assert error.exit_code == 3
    assert "exit code 3" in str(error)
    assert "giving up on purpose" in str(error), "the log tail is part of the message"
    assert not spec.pid_file.exists()


def test_missing_executable_is_a_clear_error(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    spec.command = [str(tmp_path / "no-such-binary")]
    with pytest.raises(ServiceStartError, match="cannot run"):
        start_service(spec)


def test_http_and_redis_checks_fail_on_a_closed_port() -> None:
    port = pick_free_port()
    assert not HealthCheck("http", "/health").probe("127.0.0.1", port, 0.5)
    assert not HealthCheck("redis").probe("127.0.0.1", port, 0.5)
    with pytest.raises(ValueError, match="unknown health check"):
        HealthCheck.parse("ftp")


# ----------------------------------------------------------------------------- ports


def test_picked_ports_are_bindable_and_services_get_distinct_ports(
    tmp_path: Path, started: list[Service]
) -> None:
    first = start_service(toy_spec(tmp_path, name="one"))
    started.append(first)
    second = start_service(toy_spec(tmp_path, name="two"))
    started.append(second)
    assert first.port != second.port


# ----------------------------------------------------------------------------- stopping


def test_stop_removes_pid_file_and_process(tmp_path: Path) -> None:
    spec = toy_spec(tmp_path)
    service = start_service(spec)
    pid = service.record.pid
    service.stop()
    assert not spec.pid_file.exists()
    assert gone(pid)


def test_child_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    service = start_service(toy_spec(tmp_path, "--ignore-term"))
    pid = service.record.pid
    service.stop(grace=0.3)
    assert gone(pid)


def test_whole_group_is_stopped_including_grandchildren(tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    service = start_service(toy_spec(tmp_path, "--fork-child", str(child_file)))
    child = int(child_file.read_text())
    assert psutil.pid_exists(child)
    service.stop(grace=0.3)
    assert gone(child)


def test_descendant_that_left_the_group_is_found_by_its_marker(tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    service = start_service(toy_spec(tmp_path, "--fork-child", str(child_file), "--escape"))
    child = int(child_file.read_text())
    assert os.getpgid(child) != service.record.pgid, "the child runs in a session of its own"
    service.stop(grace=0.3)
    assert gone(child)


def _ours(tmp_path: Path) -> list[int]:
    prefix = f"unit-{tmp_path.name}/"
    return [proc.pid for proc in psutil.process_iter() if _marker_of(proc).startswith(prefix)]


# Steps between the fork and the PID file: an interrupt there must not leave a server that no
# PID file names. Each case sends SIGTERM to us from inside one step.
WINDOW_STEPS = {
    "taking the new process's handle": "Service",
    "reading its start time": "identity",
    "writing its PID file": "write_pid_file",
}


@pytest.mark.parametrize("step", list(WINDOW_STEPS.values()), ids=list(WINDOW_STEPS))
def test_an_interrupt_between_the_fork_and_the_pid_file_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    module = owners if step == "identity" else process_module
    real = getattr(module, step)

    def interrupted(*args: object) -> object:
        if args and args[0] != os.getpid():
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(module, step, interrupted)
    spec = toy_spec(tmp_path)
    with signals_as_exceptions(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        start_service(spec)
    wait_until(lambda: not _ours(tmp_path), what="the half-started server to be gone", timeout=5)
    assert not spec.pid_file.exists()


def test_deferred_interrupts_hold_a_signal_until_the_block_ends() -> None:
    reached_the_end = False
    interrupted = pytest.raises(KeyboardInterrupt, match="SIGTERM")
    with signals_as_exceptions(), interrupted, deferred_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        reached_the_end = True
    assert reached_the_end


# ----------------------------------------------------------------------------- foreground


def test_run_returns_exit_code_and_streams_output() -> None:
    lines: list[str] = []
    code = run(
        [sys.executable, "-c", "print('hello'); raise SystemExit(4)"], on_output=lines.append
    )
    assert code == 4
    assert lines == ["hello"]


def test_tail_of_missing_and_long_logs(tmp_path: Path) -> None:
    assert "no log" in tail(tmp_path / "missing.log")
    log = tmp_path / "long.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3).splitlines() == ["line 97", "line 98", "line 99"]


def test_foreground_command_dies_with_its_parent() -> None:
    # A parent that runs a long command through run(), then is SIGKILLed.
    command = [sys.executable, TOY, str(pick_free_port()), "--no-listen"]
    script = f"from harness.runtime.process import run; run({command!r})"
    with strangers.stranger(sys.executable, "-c", script) as parent:
        [toy] = wait_until(
            psutil.Process(parent.pid).children, what="the command to start", timeout=10
        )
        strangers.end(parent)
        assert gone(toy.pid), "the command outlived its SIGKILLed parent"


# ----------------------------------------------------------------------------- waiting for exits

# A parent that forks a child which exits at once, and never reaps it: a zombie not ours.
ZOMBIE_MAKER = (
    "import os, time\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os._exit(0)\n"
    "print(pid, flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_zombie_that_is_not_our_child_counts_as_gone_at_once() -> None:
    with strangers.stranger(sys.executable, "-c", ZOMBIE_MAKER, stdout=subprocess.PIPE) as parent:
        assert parent.stdout is not None
        zombie = psutil.Process(int(parent.stdout.readline()))
        wait_until(lambda: zombie.status() == psutil.STATUS_ZOMBIE, what="the zombie", timeout=10)
        began = time.monotonic()
        assert _wait_gone([zombie], timeout=5) == []
        assert time.monotonic() - began < 1, "no wait for a zombie only its parent can reap"
        assert zombie.status() == psutil.STATUS_ZOMBIE, "not ours to reap"


def test_waiting_for_exits_reaps_our_children_and_reports_the_living() -> None:
    with strangers.stranger(sys.executable, "-c", "pass") as child, strangers.stranger() as living:
        procs = [psutil.Process(child.pid), psutil.Process(living.pid)]
        # The child has exited (a zombie until reaped) before the wait starts: under coverage a
        # Python child can take longer than the wait's timeout just to start.
        wait_until(lambda: procs[0].status() == psutil.STATUS_ZOMBIE, what="the child", timeout=10)
        began = time.monotonic()
        assert _wait_gone(procs, timeout=0.3) == [procs[1]]
        assert time.monotonic() - began >= 0.3, "the living one was waited for"
        assert not psutil.pid_exists(child.pid), "our exited child was reaped"
