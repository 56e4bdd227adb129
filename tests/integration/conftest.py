"""The integration tier: the proxy in front of a real OpenAI-compatible endpoint
(`harness.pytest.real_endpoint`).

Needs OPENAI_API_KEY; OPENAI_BASE_URL (default https://api.openai.com/v1) and
SWITCHYARD_INTEGRATION_MODEL (default gpt-4o-mini) are optional. Without the key every test is
skipped with that reason, and the tier still passes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import openai
import pytest

from harness.pytest.real_endpoint import real_proxy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.environ.get("OPENAI_API_KEY"):
        skip = pytest.mark.skip(reason="OPENAI_API_KEY is not set")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_proxy_url() -> Iterator[str]:
    with real_proxy() as proxy:
        yield proxy.url(proxy.config.proxy)


@pytest.fixture
def client(real_proxy_url: str) -> Iterator[openai.OpenAI]:
    # The proxy replaces this with the configured key; the client needs none of its own.
    with openai.OpenAI(base_url=f"{real_proxy_url}/v1", api_key="unused", timeout=60) as sdk:
        yield sdk
