"""Stacks of real (toy) servers: up, status, down, conflicts, and orphans of a killed owner."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from harness.pytest import strangers
from harness.pytest.procs import TOY, gone
from harness.runtime import owners, stack
from harness.runtime.config import ConfigError, load_stack_config
from harness.runtime.process import AlreadyRunning, ServiceStartError


def toy_service(name: str, *flags: str, port: str = '"pick"', argument: str = "${port}") -> str:
    """A toy server's table; `argument` is the port it is told to listen on."""
    extra = "".join(f', "{flag}"' for flag in flags)
    return f"""
[services.{name}]
command = ["${{python}}", "{TOY}", "{argument}"{extra}]
port = {port}
health = "tcp"
stop_grace = 0.5
"""


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWITCHYARD_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def stacks(state: Path) -> Iterator[list[stack.Stack]]:
    made: list[stack.Stack] = []
    yield made
    for each in made:
        each.down()


def make_stack(
    tmp_path: Path,
    made: list[stack.Stack],
    body: str,
    stack_id: str = "t",
    owner_pid: int | None = None,
) -> stack.Stack:
    path = tmp_path / f"{stack_id}.toml"
    path.write_text('[stack]\nproxy = "front"\n' + body)
    the_stack = stack.Stack(load_stack_config(path, tmp_path), stack_id, owner_pid=owner_pid)
    made.append(the_stack)
    return the_stack


def pids_of(the_stack: stack.Stack) -> list[int]:
    return [service.record.pid for service in the_stack.services().values()]


def assert_swept_as_an_orphan(the_stack: stack.Stack, pids: list[int]) -> None:
    cleaned = stack.sweep_orphans(config_path=the_stack.config.path)
    assert any(f"orphaned stack '{the_stack.id}'" in line for line in cleaned)
    assert all(gone(pid) for pid in pids)


def test_up_status_down(tmp_path: Path, state: Path, stacks: list[stack.Stack]) -> None:
    the_stack = make_stack(tmp_path, stacks, toy_service("back") + toy_service("front"))
    started = the_stack.up()
    assert list(started) == ["back", "front"]
    rows = the_stack.status()
    assert [(row.name, row.healthy) for row in rows] == [("back", True), ("front", True)]
    assert all(row.port and row.pid for row in rows)
    pids = pids_of(the_stack)

    assert the_stack.down() == ["front", "back"], "stopped in reverse order"
    assert all(gone(pid) for pid in pids)
    assert list(state.rglob("*.pid")) == []
    assert (state / "logs" / "t" / "front.log").exists(), "logs outlive the stack"


def test_second_up_reports_already_up(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    the_stack = make_stack(tmp_path, stacks, toy_service("front"))
    the_stack.up()
    pids = pids_of(the_stack)
    with pytest.raises(AlreadyRunning, match="already up"):
        make_stack(tmp_path, stacks, toy_service("front")).up()
    assert pids_of(the_stack) == pids, "the running stack is untouched"


def test_failed_start_stops_what_already_started(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    the_stack = make_stack(
        tmp_path, stacks, toy_service("back") + toy_service("front", "--exit-now", "2")
    )
    with pytest.raises(ServiceStartError, match="front: exited during startup") as caught:
        the_stack.up()
    assert caught.value.exit_code == 2
    assert list(state.rglob("*.pid")) == []
    assert the_stack.services() == {}


def test_taken_fixed_port_is_a_clear_error(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        the_stack = make_stack(tmp_path, stacks, toy_service("front", port=str(port)))
        with pytest.raises(ServiceStartError, match=f"port {port} is already in use"):
            the_stack.up()


def test_unknown_placeholder_names_file_and_key(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    the_stack = make_stack(tmp_path, stacks, toy_service("front", argument="${redis.port}"))
    with pytest.raises(
        ConfigError, match=r"t\.toml: services\.front: \$\{redis\.port\}: unknown placeholder"
    ):
        the_stack.up()


def test_stack_of_a_killed_owner_is_swept(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    with strangers.stranger() as owner:
        the_stack = make_stack(
            tmp_path, stacks, toy_service("front"), "orphan", owner_pid=owner.pid
        )
        the_stack.up()
        pids = pids_of(the_stack)
        strangers.end(owner)

    assert_swept_as_an_orphan(the_stack, pids)
    assert list(state.rglob("*.pid")) == []


@pytest.mark.parametrize(
    ("stack_id", "owned"),
    [("mine", True), ("kept", False)],
    ids=["the-stack-of-a-live-owner", "a-persistent-stack-that-is-up"],
)
def test_a_stack_that_is_no_orphan_survives_a_sweep(
    tmp_path: Path, state: Path, stacks: list[stack.Stack], stack_id: str, owned: bool
) -> None:
    owner = psutil.Process().pid if owned else None
    the_stack = make_stack(tmp_path, stacks, toy_service("front"), stack_id, owner_pid=owner)
    the_stack.up()
    pids = pids_of(the_stack)
    assert stack.sweep_orphans(config_path=the_stack.config.path) == []
    assert pids_of(the_stack) == pids


def test_crashed_service_leaves_a_stale_pid_file_that_is_cleaned(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    the_stack = make_stack(tmp_path, stacks, toy_service("front"))
    the_stack.up()
    [pid] = pids_of(the_stack)
    strangers.kill(pid)
    psutil.Process(pid).wait(timeout=5)
    cleaned = stack.sweep_orphans(config_path=the_stack.config.path)
    assert any("stale PID file" in line for line in cleaned)
    assert list(state.rglob("*.pid")) == []


def test_persistent_stack_killed_while_starting_is_swept(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    # `invoke up` SIGKILLed before the stack was healthy: its creator is dead, state "starting".
    with strangers.stranger() as creator:
        the_stack = make_stack(tmp_path, stacks, toy_service("front"), "half-up")
        the_stack.up()
        meta_path = the_stack.dir / "stack.json"
        meta = json.loads(meta_path.read_text())
        meta["state"] = "starting"
        meta["creator"] = owners.identity(creator.pid)
        meta_path.write_text(json.dumps(meta))
        pids = pids_of(the_stack)
        assert stack.sweep_orphans(config_path=the_stack.config.path) == [], "its creator is alive"
        strangers.end(creator)

    assert_swept_as_an_orphan(the_stack, pids)


def test_unreadable_stack_metadata_makes_an_orphan(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    the_stack = make_stack(tmp_path, stacks, toy_service("front"), "garbled")
    the_stack.up()
    pids = pids_of(the_stack)
    (the_stack.dir / "stack.json").write_text("{half")
    assert_swept_as_an_orphan(the_stack, pids)


def test_twenty_stacks_started_at_once_never_collide_on_ports(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    # As 20 xdist workers would: each stack picks its own ports, all at the same moment.
    many = [make_stack(tmp_path, stacks, toy_service("front"), f"many-{i}") for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        started = list(pool.map(lambda each: each.up()["front"], many))
    ports = [service.port for service in started]
    assert len(set(ports)) == 20, ports
    assert all(row.healthy for each in many for row in each.status())


def test_sweep_removes_the_run_locks_of_runs_that_are_over(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    state.mkdir(parents=True)
    over = state / f"pytest-{strangers.exited_pid()}.lock"
    over.write_text("")
    running = state / f"pytest-{os.getpid()}.lock"
    running.write_text("")
    stack.sweep_orphans()
    assert not over.exists()
    assert running.exists(), "a live run keeps its lock"
    running.unlink()


def test_a_config_template_keeps_its_extension_and_its_escaped_placeholders(
    tmp_path: Path, state: Path, stacks: list[stack.Stack]
) -> None:
    # A proxy that reads YAML (LiteLLM) tells the format by the file name.
    (tmp_path / "front.yaml").write_text("# $${not_a_placeholder}\nport: ${port}\n")
    body = toy_service("front", argument="${port}") + 'config_template = "front.yaml"\n'
    the_stack = make_stack(tmp_path, stacks, body)
    port = the_stack.up()["front"].spec.port
    [rendered] = [path for path in the_stack.dir.rglob("front.*") if path.suffix != ".pid"]
    assert rendered.name == "front.yaml"
    assert rendered.read_text() == f"# ${{not_a_placeholder}}\nport: {port}\n"


def test_a_running_stack_is_read_with_the_stack_file_it_was_started_from(
    tmp_path: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started_from = tmp_path / "first.toml"
    started_from.write_text('[stack]\nproxy = "front"\n' + toy_service("front"))
    other = tmp_path / "other.toml"
    other.write_text('[stack]\nproxy = "edge"\n' + toy_service("edge"))
    monkeypatch.setenv("SWITCHYARD_STACK_CONFIG", str(started_from))
    running = stack.load("recorded")
    running.up()
    try:
        monkeypatch.setenv("SWITCHYARD_STACK_CONFIG", str(other))
        seen = stack.load("recorded")
        assert seen.config.path == started_from
        assert [(row.name, row.healthy) for row in seen.status()] == [("front", True)]
    finally:
        running.down()
    assert stack.load("recorded").config.path == other, "a stack that is gone has no record"
