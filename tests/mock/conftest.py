"""Fixtures of the mock tier: clients of the proxy, and the mock's control API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import CLIENT_KEY, Gateways


@pytest.fixture
def client(proxy_url: str, tag: str) -> Iterator[openai.OpenAI]:
    """The official SDK, pointed at the proxy; every request carries the test's mock tag."""
    with openai.OpenAI(
        base_url=f"{proxy_url}/v1",
        api_key=CLIENT_KEY,
        default_headers={"x-mock-tag": tag},
        max_retries=0,
        timeout=30,
    ) as sdk:
        yield sdk


@pytest.fixture
def http(proxy_url: str, tag: str) -> Iterator[httpx.Client]:
    """Raw HTTP to the proxy, for wire details the SDK hides."""
    headers = {"x-mock-tag": tag, "authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.Client(base_url=proxy_url, headers=headers, timeout=30) as raw:
        yield raw


@pytest.fixture
def seen(mock_control: testing.MockControl, tag: str):  # type: ignore[no-untyped-def]
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
    with Gateways(stack, tag) as started:
        yield started
