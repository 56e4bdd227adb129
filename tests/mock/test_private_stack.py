"""Private services for tests that must break things: a proxy with its own config, and a Redis
that is restarted on the same port."""

from __future__ import annotations

import httpx

from harness.pytest import stacks as testing
from harness.pytest.proxy_configs import SERVER_DEFAULTS, model
from harness.runtime.config import toml_document
from harness.runtime.process import HealthCheck

# No [cache] section: the proxy's defaults, as in a config a user writes.
TINY_CONFIG = toml_document(
    {
        "server": SERVER_DEFAULTS,
        "upstreams": [{"name": "only", "base_url": "${mock.url}/only/v1"}],
        "models": [model("the-only-model", ["only"])],
    }
)


def test_private_proxy_with_its_own_config_uses_the_shared_mock(stack, tag: str) -> None:
    private = testing.private_stack(stack, "own-config", proxy_config=TINY_CONFIG)
    try:
        url = private.url(private.config.proxy)
        assert url != stack.proxy_url
        models = httpx.get(f"{url}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["the-only-model"]
        body = {"model": "the-only-model", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"x-mock-tag": tag})
        assert reply.headers["x-mock-upstream"] == "only"
    finally:
        private.down()
    assert private.services() == {}


def test_redis_restarts_on_the_same_port(stack) -> None:
    private = testing.private_stack(stack, "redis", ["redis"])
    try:
        before = private.services()["redis"]
        after = private.restart_service("redis")
        assert after.port == before.port
        assert after.record.pid != before.record.pid
        assert HealthCheck("redis").probe("127.0.0.1", after.port or 0, 1.0)
    finally:
        private.down()
