"""The registry of started servers and the sweep of abandoned ones, against real processes: a
server whose keeper died is stopped wherever its PID file is; a live keeper's server and a
persistent one are left alone; and a foreign process is never signalled."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.pytest import strangers
from harness.pytest.procs import TOY, gone
from harness.runtime import owners
from harness.runtime.process import (
    OWNER_ENV,
    HealthCheck,
    PidRecord,
    Service,
    ServiceSpec,
    owned_process,
    pick_free_port,
    start_service,
    sweep_abandoned,
)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry of this test's own, outside any test run's ownership."""
    monkeypatch.setenv(owners.REGISTRY_ENV, str(tmp_path / "registry"))
    monkeypatch.delenv(owners.RUN_OWNER_ENV, raising=False)
    return tmp_path / "registry"


@pytest.fixture
def started() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for service in services:
        service.stop(grace=0.5)


def toy(tmp_path: Path, name: str, owner_pid: int | None) -> ServiceSpec:
    port = pick_free_port()
    return ServiceSpec(
        name=name,
        command=[sys.executable, TOY, str(port)],
        pid_file=tmp_path / "elsewhere" / f"{name}.pid",
        log_file=tmp_path / "elsewhere" / f"{name}.log",
        health=HealthCheck("tcp"),
        port=port,
        owner=f"owners-{tmp_path.name}",
        owner_pid=owner_pid,
        startup_timeout=10,
        stop_grace=0.5,
    )


def forged_entry(registry: Path, record: PidRecord, keeper_pid: int) -> Path:
    path = registry / f"forged-{record.name}.json"
    owners.write(
        path,
        {
            "pid_file": "",
            "starter": owners.identity(keeper_pid),
            "keeper": owners.identity(keeper_pid),
            "record": record.__dict__,
        },
    )
    return path


def a_record(name: str, pid: int, started: float, marker: str) -> PidRecord:
    return PidRecord(name, pid, started, ["x"], None, "/nonexistent.log", 0.0, "t", marker)


def test_a_server_whose_keeper_died_is_stopped_wherever_its_pid_file_is(
    tmp_path: Path, registry: Path, started: list[Service]
) -> None:
    with strangers.stranger() as keeper:
        service = start_service(toy(tmp_path, "orphan", owner_pid=keeper.pid))
        started.append(service)
        [entry] = owners.entries()
        assert entry[1]["keeper"] == owners.identity(keeper.pid)
        assert sweep_abandoned() == [], "its keeper is alive"
    assert service.alive()
    [line] = sweep_abandoned()
    assert f"PID {service.record.pid}" in line and str(service.spec.pid_file) in line
    assert gone(service.record.pid)
    assert not service.spec.pid_file.exists()
    assert owners.entries() == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs procfs")
def test_a_wall_clock_adjustment_does_not_make_a_live_keeper_look_dead(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch, started: list[Service]
) -> None:
    # psutil dates a process by the boot time the wall clock gives now; when the clock is
    # adjusted, that moves by a second, and a keeper that was alive all along looked dead.
    with strangers.stranger() as keeper:
        service = start_service(toy(tmp_path, "kept", owner_pid=keeper.pid))
        started.append(service)
        recorded = owners.identity(keeper.pid)
        dated_before = psutil.Process(keeper.pid).create_time()
        platform = sys.modules[type(psutil.Process(keeper.pid)._proc).__module__]
        booted = platform.boot_time()
        monkeypatch.setattr(platform, "boot_time", lambda: booted + 1.0)
        assert psutil.Process(keeper.pid).create_time() == pytest.approx(dated_before + 1.0)
        assert owners.is_alive(recorded)
        assert sweep_abandoned() == [], "its keeper is alive"
        assert owned_process(service.record) is not None
    assert service.alive()


def test_a_test_run_keeps_what_its_tests_start(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch, started: list[Service]
) -> None:
    # Even a service with an owner of its own: the run ends it, if nothing else does.
    monkeypatch.setenv(owners.RUN_OWNER_ENV, str(os.getpid()))
    service = start_service(toy(tmp_path, "kept", owner_pid=strangers.exited_pid()))
    started.append(service)
    [(_, entry)] = owners.entries()
    assert entry["keeper"] == owners.identity(os.getpid())
    assert sweep_abandoned() == []
    assert service.alive()


def test_a_persistent_server_stays_while_its_pid_file_names_it(
    tmp_path: Path, registry: Path, started: list[Service]
) -> None:
    service = start_service(toy(tmp_path, "persistent", owner_pid=None))
    started.append(service)
    [(path, entry)] = owners.entries()
    assert entry["keeper"] is None
    # Its starter gone (as `invoke up` exits): kept, for its PID file knows it.
    owners.write(path, {**entry, "starter": owners.identity(strangers.exited_pid())})
    assert sweep_abandoned() == []
    assert service.alive()
    # Its state directory removed: nothing else would ever find it.
    service.spec.pid_file.unlink()
    assert len(sweep_abandoned()) == 1
    assert gone(service.record.pid)


def test_a_server_registered_before_it_had_a_pid_is_found_by_its_marker(
    registry: Path,
) -> None:
    marker = f"owners/early/{os.urandom(8).hex()}"
    env = {**os.environ, OWNER_ENV: marker}
    with strangers.stranger(*strangers.SLEEPER, env=env, start_new_session=True) as server:
        forged_entry(registry, a_record("early", 0, 0.0, marker), strangers.exited_pid())
        assert len(sweep_abandoned()) == 1
        assert server.wait(timeout=10) != 0, "stopped by a signal"
    assert owners.entries() == []


def test_the_sweep_never_touches_a_process_without_our_marker(
    tmp_path: Path, registry: Path, started: list[Service]
) -> None:
    """Real foreign processes, named by entries whose keeper is dead: one holds a recorded PID
    but started at another time (a reused PID), one carries another project's marker. Neither
    is signalled, while a server of ours in the same sweep is stopped."""
    dead = strangers.exited_pid()
    ours = start_service(toy(tmp_path, "ours", owner_pid=dead))
    started.append(ours)
    other_env = {**os.environ, OWNER_ENV: "another-project/mock/0123"}
    with (
        strangers.stranger() as reused,
        strangers.stranger(*strangers.SLEEPER, env=other_env) as other,
    ):
        created = owners.identity(reused.pid)["started"]
        forged_entry(registry, a_record("reused", reused.pid, created - 60, "t/reused/1"), dead)
        forged_entry(registry, a_record("other", other.pid, 0.0, "t/other/2"), dead)
        swept = sweep_abandoned()
        assert [line.split(" ")[0] for line in swept] == ["ours"]
        assert gone(ours.record.pid)
        for foreign in (reused, other):
            assert foreign.poll() is None, "a foreign process was signalled"
            with pytest.raises(subprocess.TimeoutExpired):
                foreign.wait(timeout=0.2)
    assert owners.entries() == [], "the entries of foreign processes are dropped"
