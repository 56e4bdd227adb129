"""The pytest plugin of every tier (registered by tests/conftest.py with `pytest_plugins`): the
stack a run uses and the hooks around it, the mock's control API, clients of the shared proxy,
and private proxies (`gateways`). The logic lives in `harness.pytest.stacks` and
`harness.pytest.gateway`; these are the fixtures that hand it to tests.
"""

from __future__ import annotations

import os
import signal
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.runtime import owners
from harness.runtime.process import sweep_abandoned

if TYPE_CHECKING:
    import openai

    from harness.pytest.gateway import Gateways

TIER_MARKERS = ("unit", "mock", "integration")


# --------------------------------------------------------------------------- hooks


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        # The controller: workers inherit this, so they know whose run the stack belongs to,
        # and register every server where the next command looks, even from a test that
        # moves SWITCHYARD_STATE_DIR. Servers of an earlier run that died are stopped first.
        os.environ.setdefault(testing.RUN_OWNER_ENV, str(os.getpid()))
        os.environ.setdefault(owners.REGISTRY_ENV, str(owners.registry_dir()))
        sweep_abandoned()

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    # SIGTERM runs the same teardown as Ctrl-C, so the stack is stopped.
    signal.signal(signal.SIGTERM, interrupt)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick",
        action="store_true",
        help="the dev loop's selection: no test marked slow, and one case of each "
        "parametrized test (the full tier runs them all)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test gets the marker of the tier directory it lives in; `--quick` narrows the run."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIER_MARKERS:
            item.add_marker(getattr(pytest.mark, tier))
    if config.getoption("quick"):
        kept = quick_selection(items) | asked_to_rerun(config, items)
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = [item for item in items if item in kept]


# Tests the dev loop keeps of each module: a module holds one capability (chat, the cache,
# fallbacks, tool loops...), and the loop touches each, while the full tier runs them all.
QUICK_TESTS_PER_MODULE = 2


def quick_selection(items: list[pytest.Item]) -> set[pytest.Item]:
    """Of the tests not marked slow, one case per parametrized test, and of those at most
    `QUICK_TESTS_PER_MODULE` per module. Cases and tests are picked by a hash of their names,
    so across tests every endpoint and mode still runs, and every xdist worker picks the same."""
    cases: dict[str, list[pytest.Item]] = {}
    for item in items:
        if item.get_closest_marker("slow") is None:
            cases.setdefault(item.nodeid.split("[")[0], []).append(item)
    modules: dict[str, list[pytest.Item]] = {}
    for name, group in sorted(cases.items(), key=lambda case: zlib.crc32(case[0].encode())):
        modules.setdefault(name.split("::")[0], []).append(
            group[zlib.crc32(name.encode()) % len(group)]
        )
    return {item for kept in modules.values() for item in kept[:QUICK_TESTS_PER_MODULE]}


def asked_to_rerun(config: pytest.Config, items: list[pytest.Item]) -> set[pytest.Item]:
    """With `--lf` or `--ff`, the tests that failed last time, whichever run they failed in:
    the quick loop would otherwise drop a failure of the full tier before pytest's own filter
    sees it, and `nox -s mock -- --lf` would rerun the quick selection instead."""
    if config.cache is None or not (config.getoption("lf") or config.getoption("failedfirst")):
        return set()
    failed = config.cache.get("cache/lastfailed", {})
    return {item for item in items if item.nodeid in failed}


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        testing.release_run_stack()


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


# --------------------------------------------------------------------------- the run's stack


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


# --------------------------------------------------------------------------- the mock tier


@pytest.fixture
def client(proxy_url: str, tag: str) -> Iterator[openai.OpenAI]:
    """The official SDK, pointed at the proxy; every request carries the test's mock tag."""
    # Imported here, not with the plugin: the SDK takes a second to import, and a run whose
    # tests never ask for a client (the unit tier's controller, say) should not pay it.
    import openai

    from harness.pytest.gateway import CLIENT_KEY

    with openai.OpenAI(
        base_url=f"{proxy_url}/v1",
        api_key=CLIENT_KEY,
        default_headers={"x-mock-tag": tag},
        max_retries=0,
        timeout=30,
        _strict_response_validation=True,
    ) as sdk:
        yield sdk


@pytest.fixture
def http(proxy_url: str, tag: str) -> Iterator[httpx.Client]:
    """Raw HTTP to the proxy, for wire details the SDK hides."""
    from harness.pytest.gateway import CLIENT_KEY

    headers = {"x-mock-tag": tag, "authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.Client(base_url=proxy_url, headers=headers, timeout=30) as raw:
        yield raw


@pytest.fixture
def seen(mock_control: testing.MockControl, tag: str) -> Callable[[], list[dict[str, Any]]]:
    """The requests the mock received for this test, oldest first."""
    return lambda: mock_control.requests(tag=tag)


@pytest.fixture
def upstream_key(stack: testing.StackHandle) -> str:
    if stack.stack is None:
        pytest.skip("needs a stack started by the harness, to know the upstream key")
    return stack.stack.config.proxy_service().env["SWITCHYARD_MOCK_A_KEY"]


@pytest.fixture
def gateways(stack: testing.StackHandle, tag: str) -> Iterator[Gateways]:
    """Private proxies for one test, wired to the shared mock; all stopped when it ends."""
    from harness.pytest.gateway import Gateways

    if stack.stack is None:
        pytest.skip("starts proxies of its own, so it needs a stack the harness started")
    with Gateways(stack, tag) as started:
        yield started
