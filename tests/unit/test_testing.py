"""How a test run picks its stack (`harness.pytest.stacks`), in a private scene of toy servers: an
external proxy, a named stack, the default stack when reuse is allowed, and what a handle says
about its servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.pytest import stacks as testing
from harness.pytest import strangers
from harness.pytest.procs import gone
from harness.pytest.scene import Scene, make_scene, toy_service
from harness.runtime import stack

SELECTORS = ("SWITCHYARD_BASE_URL", "SWITCHYARD_MOCK_URL", "SWITCHYARD_STACK", "SWITCHYARD_REUSE")


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    made = make_scene(tmp_path, monkeypatch)
    # The run around these tests may itself have been pointed at a stack.
    for name in SELECTORS:
        monkeypatch.delenv(name, raising=False)
    made.config.write_text(
        '[stack]\nproxy = "front"\nmock = "back"\n' + toy_service("back") + toy_service("front")
    )
    yield made
    made.stop_everything()


def test_an_external_proxy_is_used_as_given(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_BASE_URL", "http://proxy.example:8080/")
    monkeypatch.setenv("SWITCHYARD_MOCK_URL", "http://mock.example:9000")
    handle = testing.acquire_stack()
    assert handle.proxy_url == "http://proxy.example:8080"
    assert handle.mock_url == "http://mock.example:9000"
    assert handle.stack is None
    assert handle.dead_services() == [] and handle.log_tails() == {}
    assert stack.list_stacks() == [], "nothing was started"
    with pytest.raises(RuntimeError, match="needs a stack started by the harness"):
        testing.private_stack(handle, "x")


def test_a_named_stack_must_be_up(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_STACK", "nightly")
    with pytest.raises(RuntimeError, match="SWITCHYARD_STACK=nightly, but that stack is not up"):
        testing.acquire_stack()
    services = stack.load("nightly").up()
    handle = testing.acquire_stack()
    assert handle.proxy_url == services["front"].url
    assert handle.mock_url == services["back"].url
    assert handle.stack is not None and handle.stack.id == "nightly"
    assert stack.list_stacks() == ["nightly"], "no other stack was started"


def test_the_default_stack_is_reused_unless_reuse_is_off(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = stack.load().up()
    monkeypatch.setenv("SWITCHYARD_REUSE", "1")
    handle = testing.acquire_stack()
    assert handle.stack is not None and handle.stack.id == stack.DEFAULT_STACK
    assert handle.proxy_url == services["front"].url

    monkeypatch.setenv("SWITCHYARD_REUSE", "0")
    monkeypatch.setenv(testing.RUN_OWNER_ENV, str(psutil.Process().pid))
    own = testing.acquire_stack()
    assert own.stack is not None and own.stack.id == testing.run_stack_id()
    assert own.proxy_url != handle.proxy_url
    testing.release_run_stack()
    assert stack.list_stacks() == [stack.DEFAULT_STACK], "only the run's own stack was stopped"


def test_a_nested_run_leaves_the_stack_of_the_run_around_it_up(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pytest started by a test inherits the outer run's owner, hence its stack id.
    outer = psutil.Process().parent()
    assert outer is not None
    monkeypatch.setenv(testing.RUN_OWNER_ENV, str(outer.pid))
    services = stack.load(testing.run_stack_id(), owner_pid=outer.pid).up()
    testing.release_run_stack()
    assert stack.list_stacks() == [testing.run_stack_id()], "the outer run's stack is still up"
    assert not any(gone(service.record.pid) for service in services.values())


def test_a_handle_names_dead_servers_and_shows_their_logs(scene: Scene) -> None:
    the_stack = stack.load("crashy")
    services = the_stack.up()
    handle = testing.handle_for(the_stack)
    assert handle.dead_services() == []
    tails = handle.log_tails(lines=5)
    assert set(tails) == {"back", "front"}
    assert f"starting on port {services['back'].port}" in tails["back"]

    pid = services["back"].record.pid
    strangers.kill(pid)
    assert gone(pid)
    assert handle.dead_services() == ["back"]
