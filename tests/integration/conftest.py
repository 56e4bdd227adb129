"""The integration tier: the proxy in front of a real OpenAI-compatible endpoint.

Needs OPENAI_API_KEY; OPENAI_BASE_URL (default https://api.openai.com/v1) and
SWITCHYARD_INTEGRATION_MODEL (default gpt-4o-mini) are optional. Without the key every test is
skipped with that reason, and the tier still passes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import openai
import pytest

from harness.pytest import stacks as testing
from harness.pytest.proxy_configs import SERVER_DEFAULTS, model
from harness.runtime.config import toml_document

MODEL = os.environ.get("SWITCHYARD_INTEGRATION_MODEL", "gpt-4o-mini")

# The key stays in the environment: the rendered config names the variable, never the value.
PROXY_CONFIG = toml_document(
    {
        "server": SERVER_DEFAULTS,
        "upstreams": [
            {
                "name": "real",
                "base_url": "${base_url}",
                "api_key_env": "OPENAI_API_KEY",
                "responses": True,
                "timeout_ms": 60000,
            }
        ],
        "models": [model("${model}", ["real"])],
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.environ.get("OPENAI_API_KEY"):
        skip = pytest.mark.skip(reason="OPENAI_API_KEY is not set")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_proxy_url() -> Iterator[str]:
    base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
    inherit: dict[str, object] = {"base_url": base_url, "model": MODEL}
    proxy = testing.own_stack("integration", proxy_config=PROXY_CONFIG, inherit=inherit)
    try:
        yield proxy.url(proxy.config.proxy)
    finally:
        proxy.down()


@pytest.fixture
def client(real_proxy_url: str) -> Iterator[openai.OpenAI]:
    # The proxy replaces this with the configured key; the client needs none of its own.
    with openai.OpenAI(base_url=f"{real_proxy_url}/v1", api_key="unused", timeout=60) as sdk:
        yield sdk
