"""Fixtures shared by every tier. The logic lives in `harness.pytest.stacks`."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.pytest import stacks as testing

TIER_MARKERS = ("unit", "mock", "integration")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        # The controller: workers inherit this, so they know whose run the stack belongs to.
        os.environ.setdefault(testing.RUN_OWNER_ENV, str(os.getpid()))

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    # SIGTERM runs the same teardown as Ctrl-C, so the stack is stopped.
    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets the marker of the tier directory it lives in."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIER_MARKERS:
            item.add_marker(getattr(pytest.mark, tier))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        testing.release_run_stack()


@pytest.fixture(scope="session")
def stack() -> testing.StackHandle:
    return testing.acquire_stack()


@pytest.fixture(scope="session")
def proxy_url(stack: testing.StackHandle) -> str:
    return stack.proxy_url


@pytest.fixture(scope="session")
def mock_control(stack: testing.StackHandle) -> Iterator[testing.MockControl]:
    if stack.mock_url is None:
        pytest.skip("this stack has no mock upstream (set SWITCHYARD_MOCK_URL)")
    control = testing.MockControl(stack.mock_url)
    yield control
    control.close()


@pytest.fixture
def tag() -> str:
    """A tag unique to the test: the mock scopes its log, counts and faults by it."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failing test that used the stack shows the tail of each server's log, and names any
    server that died."""
    report = yield
    handle = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(handle, testing.StackHandle):
        dead = handle.dead_services()
        if dead:
            report.sections.append(
                ("stack", f"these servers are no longer running: {', '.join(dead)}")
            )
        for name, text in handle.log_tails().items():
            report.sections.append((f"{name} log (last lines)", text))
    return report
