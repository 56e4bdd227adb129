"""config/gateway.example.toml, the README's complete example, is a config the proxy accepts."""

from __future__ import annotations

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.runtime import paths

EXAMPLE = paths.root() / "config" / "gateway.example.toml"
KEYS = ["OPENAI_API_KEY", "AZURE_OPENAI_KEY", "ACME_KEY", "GLOBEX_KEY", "SWITCHYARD_ADMIN_KEY"]


@pytest.mark.slow
def test_example_config_starts_and_serves_its_models(stack) -> None:
    env = {name: f"sk-example-{index}" for index, name in enumerate(KEYS)}
    private = testing.private_stack(
        stack, "example", proxy_config=EXAMPLE.read_text(), proxy_env=env
    )
    try:
        url = private.url(private.config.proxy)
        status = httpx.get(f"{url}/status").json()
        assert {m["name"] for m in status["models"]} == {"gpt-4o-mini", "gpt-4.1", "local-small"}
        assert {u["name"] for u in status["upstreams"]} == {"openai", "azure", "local"}
        models = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer sk-example-2"})
        assert models.status_code == 200
        assert httpx.get(f"{url}/v1/models").status_code == 401, "auth is on"
    finally:
        private.down()
