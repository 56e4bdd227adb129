"""Proxies of a gateway test's own (contract section 3), and every helper the gateway tests
import from here: the configs (`harness.pytest.proxy_configs`), the calls (`harness.pytest.calls`)
and the readers (`harness.pytest.readers`) are re-exported, so `from harness.pytest.gateway import
...` names them all.

Every test starts its own proxy (about 50 ms) with upstream names of its own, so the mock's
per-upstream counts are that test's alone, whatever runs next to it under `pytest -n auto`.
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from typing import Any

import httpx
import openai
import pytest

from harness.pytest import stacks as testing
from harness.pytest.calls import (
    CHAT,
    EACH_ENDPOINT,
    EACH_MODE,
    ENDPOINTS,
    PATHS,
    RESPONSES,
    Answer,
    ask,
    concurrently,
    read_stream,
    read_until,
    reply_to,
    request_body,
    stream_completed,
    stream_error_event,
    stream_text,
    words,
)
from harness.pytest.proxy_configs import (
    SERVER_DEFAULTS,
    Keys,
    mock_upstream,
    model,
    proxy_config,
    unreachable_upstream,
)
from harness.pytest.readers import (
    Metrics,
    admin_usage,
    calls,
    logged,
    read_until_closed,
    records_of,
    usage_of,
    wait_for,
)
from harness.runtime import stack as stacks
from harness.runtime.process import Service

__all__ = [
    "CHAT",
    "CLIENT_KEY",
    "EACH_ENDPOINT",
    "EACH_MODE",
    "ENDPOINTS",
    "PATHS",
    "RESPONSES",
    "SERVER_DEFAULTS",
    "Answer",
    "Gateway",
    "Gateways",
    "Keys",
    "Metrics",
    "admin_usage",
    "ask",
    "calls",
    "concurrently",
    "logged",
    "mock_upstream",
    "model",
    "proxy_config",
    "read_stream",
    "read_until",
    "read_until_closed",
    "records_of",
    "redacted",
    "reply_to",
    "request_body",
    "start_service_on",
    "stop_service",
    "stream_completed",
    "stream_error_event",
    "stream_text",
    "unique",
    "unreachable_upstream",
    "usage_of",
    "wait_for",
    "words",
]

CLIENT_KEY = "sk-client-key-for-tests-5d1e"


def redacted(value: str) -> str:
    """How the mock logs a secret header: a fingerprint, never the value."""
    return f"<redacted sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}>"


def unique(name: str) -> str:
    """An upstream or model name no other test uses (the mock counts per upstream name)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


class Gateway:
    """A proxy started for one test, with clients that carry the test's mock tag."""

    def __init__(self, private: stacks.Stack, tag: str) -> None:
        self.private = private
        self.tag = tag
        self._clients: list[openai.OpenAI | httpx.Client] = []
        self.url = private.url(private.config.proxy)

    def sdk(
        self, key: str = CLIENT_KEY, *, timeout: float = 30, headers: dict[str, str] | None = None
    ) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=key,
            default_headers={"x-mock-tag": self.tag, **(headers or {})},
            max_retries=0,
            timeout=timeout,
            _strict_response_validation=True,
        )
        self._clients.append(client)
        return client

    def http(self, key: str | None = CLIENT_KEY, *, timeout: float = 30) -> httpx.Client:
        """Raw HTTP, for wire details; `key=None` sends no Authorization at all."""
        headers = {"x-mock-tag": self.tag}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self._clients.append(client)
        return client

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/status", timeout=10).json())

    def upstream_status(self, name: str) -> dict[str, Any]:
        [entry] = [u for u in self.status()["upstreams"] if u["name"] == name]
        return dict(entry)

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/stats", timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def metrics_text(self) -> str:
        response = httpx.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return response.text

    def metrics(self) -> Metrics:
        return Metrics.parse(self.metrics_text())

    @property
    def proxy(self) -> Service:
        """The proxy's process, as the process manager knows it."""
        return self.private.services()[self.private.config.proxy]

    def connect(self, timeout: float = 30) -> socket.socket:
        """A raw TCP connection to the proxy, for clients that misbehave on purpose."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return socket.create_connection((host, int(port)), timeout=timeout)

    def log_text(self) -> str:
        path = self.private.log_path(self.private.config.proxy)
        return path.read_text(errors="replace") if path.exists() else ""

    def restart_proxy(self) -> None:
        """Stop the proxy and start it again with the same config and state directory (on a
        new port: clients made before the restart point at the old one)."""
        self.private.restart_service(self.private.config.proxy)
        self.url = self.private.url(self.private.config.proxy)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.private.down()


class Gateways:
    """Starts private proxies for one test and stops every one of them at its end."""

    def __init__(self, handle: testing.StackHandle, tag: str) -> None:
        if handle.stack is None:
            pytest.skip("gateway tests start proxies of their own: needs a harness-started stack")
        self.handle = handle
        self.tag = tag
        self._started: list[Gateway] = []

    def start(
        self,
        config: str,
        env: dict[str, str] | None = None,
        *,
        own_redis: bool = False,
        label: str = "gw",
    ) -> Gateway:
        """`own_redis`: a Redis of this test's own, which it may stop (`${redis.port}` is it)."""
        services = ["redis", "proxy"] if own_redis else ["proxy"]
        private = testing.private_stack(
            self.handle, label, services, proxy_config=config, proxy_env=env
        )
        gateway = Gateway(private, self.tag)
        self._started.append(gateway)
        return gateway

    def close(self) -> None:
        for gateway in reversed(self._started):
            gateway.close()

    def __enter__(self) -> Gateways:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def stop_service(gateway: Gateway, name: str) -> int:
    """Stop a service of the gateway's own stack (e.g. its Redis); returns the port it had."""
    service = gateway.private.services()[name]
    port = service.port
    assert port is not None
    service.stop()
    return port


def start_service_on(gateway: Gateway, name: str, port: int) -> Service:
    """Start a stopped service again on the port it had, which the proxy's config names."""
    return gateway.private.start_service(name, port=port)
