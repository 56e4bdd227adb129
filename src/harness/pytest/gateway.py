"""Shared helpers of the gateway tests (contract section 3): a proxy of the test's own, built
from a config written here, clients of it, one call helper for both endpoints and both modes,
bounded polling, and readers for the mock's counts, /status, /stats and /metrics.

Every test starts its own proxy (about 50 ms) with upstream names of its own, so the mock's
per-upstream counts are that test's alone, whatever runs next to it under `pytest -n auto`.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from harness.pytest import stacks as testing
from harness.runtime import stack as stacks
from harness.runtime.process import Service
from harness.sse import sse_events

CLIENT_KEY = "sk-client-key-for-tests-5d1e"


def redacted(value: str) -> str:
    """How the mock logs a secret header: a fingerprint, never the value."""
    return f"<redacted sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}>"


CHAT, RESPONSES = "chat", "responses"
ENDPOINTS = (CHAT, RESPONSES)
PATHS = {CHAT: "/v1/chat/completions", RESPONSES: "/v1/responses"}

# Parametrizations most tests share: every capability holds on both endpoints, in both modes.
EACH_ENDPOINT = pytest.mark.parametrize("endpoint", ENDPOINTS)
EACH_MODE = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])

T = TypeVar("T")


def unique(name: str) -> str:
    """An upstream or model name no other test uses (the mock counts per upstream name)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- proxy configs


def mock_upstream(name: str, **settings: Any) -> dict[str, Any]:
    """An upstream served by the shared mock under its own name. `responses = true` passes
    /v1/responses through unchanged, so what a test sends is what the mock logs."""
    return {"name": name, "base_url": f"${{mock.url}}/{name}/v1", "responses": True, **settings}


def unreachable_upstream(name: str, **settings: Any) -> dict[str, Any]:
    """An upstream where nothing listens: every attempt is a connect error."""
    return {
        "name": name,
        "base_url": "http://127.0.0.1:${unused_port}/v1",
        "connect_timeout_ms": 1000,
        **settings,
    }


def model(name: str, upstreams: list[str], **settings: Any) -> dict[str, Any]:
    return {"name": name, "upstreams": upstreams, **settings}


@dataclass
class Keys:
    """An admin key and one key per tenant, handed to the proxy through its environment."""

    admin: str
    tenants: dict[str, str]

    @classmethod
    def make(cls, *tenants: str) -> Keys:
        return cls(
            admin=f"sk-gw-admin-{uuid.uuid4().hex}",
            tenants={tenant: f"sk-gw-{tenant}-{uuid.uuid4().hex}" for tenant in tenants},
        )

    def env(self) -> dict[str, str]:
        env = {"GW_ADMIN_KEY": self.admin}
        for index, key in enumerate(self.tenants.values()):
            env[f"GW_TENANT_KEY_{index}"] = key
        return env

    def auth_section(self) -> dict[str, Any]:
        return {
            "admin_key_env": "GW_ADMIN_KEY",
            "keys": [
                {"tenant": tenant, "key_env": f"GW_TENANT_KEY_{index}"}
                for index, tenant in enumerate(self.tenants)
            ],
        }

    def all(self) -> list[str]:
        return [self.admin, *self.tenants.values()]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, for the plain text used here
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML rendering for {value!r}")


def _toml_table(header: str, table: dict[str, Any]) -> list[str]:
    return [header, *(f"{key} = {_toml_value(value)}" for key, value in table.items()), ""]


def proxy_config(
    upstreams: list[dict[str, Any]],
    models: list[dict[str, Any]],
    *,
    retry: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
    cache: dict[str, Any] | None = None,
    keys: Keys | None = None,
    ledger: dict[str, Any] | None = None,
    prices: dict[str, dict[str, float]] | None = None,
    slo: dict[str, Any] | None = None,
) -> str:
    """A proxy config template (`${mock.url}` and friends are filled in by the harness).

    The cache is off unless a test asks for it: the default memory cache would answer repeated
    identical requests itself, and the routing tests count what reaches the upstreams.
    """
    lines = _toml_table("[server]", {"bind": "127.0.0.1", "port": 0})
    for upstream in upstreams:
        lines += _toml_table("[[upstreams]]", upstream)
    for entry in models:
        lines += _toml_table("[[models]]", entry)
    sections = {
        "retry": retry,
        "health": health,
        "cache": cache if cache is not None else {"backend": "off"},
        "ledger": ledger,
        "slo": slo,
    }
    for name, table in sections.items():
        if table is not None:
            lines += _toml_table(f"[{name}]", table)
    if keys is not None:
        auth = keys.auth_section()
        lines += _toml_table("[auth]", {"admin_key_env": auth["admin_key_env"]})
        for entry in auth["keys"]:
            lines += _toml_table("[[auth.keys]]", entry)
    for model_name, price in (prices or {}).items():
        lines += _toml_table(f"[prices.{json.dumps(model_name)}]", price)
    return "\n".join(lines)


# --------------------------------------------------------------------------- private proxies


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


# --------------------------------------------------------------------------- the mock


def calls(mock: testing.MockControl, tag: str, upstream: str) -> int:
    """Requests the mock received for this upstream, from this test."""
    return int(mock.counts(tag=tag)["upstreams"].get(upstream, {}).get("total", 0))


def logged(mock: testing.MockControl, tag: str, upstream: str) -> list[dict[str, Any]]:
    return mock.requests(tag=tag, upstream=upstream)


def wait_for(
    condition: Callable[[], T], *, what: str, timeout: float = 5.0, interval: float = 0.02
) -> T:
    """Poll until `condition()` is truthy (returns it), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the proxy sends until it closes the connection (a reset counts as closed)."""
    received = bytearray()
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        received += piece
    return bytes(received)


# --------------------------------------------------------------------------- content


def words(text: str) -> int:
    return len(text.split())


def reply_to(text: str) -> str:
    """The mock's reply to a single user message (contract section 1)."""
    return " ".join(f"reply 1: {text}".split())


def request_body(
    endpoint: str, model_name: str, text: str, *, stream: bool = False, **params: Any
) -> dict[str, Any]:
    if endpoint == CHAT:
        body: dict[str, Any] = {
            "model": model_name,
            "messages": [{"role": "user", "content": text}],
        }
    else:
        body = {"model": model_name, "input": text}
    if stream:
        body["stream"] = True
    return {**body, **params}


def stream_error_event(endpoint: str, raw: str) -> dict[str, Any] | None:
    """The OpenAI-format error event that ends a failed stream, if there is one."""
    for name, data in sse_events(raw):
        if data == "[DONE]":
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            continue
        if endpoint == CHAT and isinstance(payload, dict) and "error" in payload:
            return dict(payload["error"])
        if endpoint == RESPONSES and (name == "error" or payload.get("type") == "error"):
            return dict(payload)
    return None


def stream_text(endpoint: str, raw: str) -> str:
    """The reply text carried by the content deltas of a raw SSE stream."""
    parts = []
    for name, data in sse_events(raw):
        if data == "[DONE]" or not data.startswith("{"):
            continue
        payload = json.loads(data)
        if endpoint == CHAT:
            for choice in payload.get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
        elif (name or payload.get("type")) == "response.output_text.delta":
            parts.append(payload["delta"])
    return "".join(parts)


def read_stream(
    client: httpx.Client,
    endpoint: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, str]:
    """POST a streaming request; the response and every byte of its body that arrived, even
    when the connection broke part-way (what arrived before the break is what tests judge)."""
    received = []
    with client.stream("POST", PATHS[endpoint], json=body, headers=headers) as response:
        try:
            for piece in response.iter_raw():
                received.append(piece)
        except httpx.HTTPError:
            pass
    return response, b"".join(received).decode(errors="replace")


def stream_completed(endpoint: str, raw: str) -> bool:
    events = sse_events(raw)
    if endpoint == CHAT:
        return any(data == "[DONE]" for _, data in events)
    return any(name in {"response.completed", "response.incomplete"} for name, _ in events)


# --------------------------------------------------------------------------- calls


@dataclass
class Answer:
    """What a client got: status, headers, reply text, usage, and an error (an error status,
    or an error event that ended a stream)."""

    status: int
    headers: Mapping[str, str]
    text: str = ""
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    completed: bool = False
    events: list[Any] = field(default_factory=list)
    # The chat completion's or the response's id.
    id: str | None = None

    @property
    def upstream(self) -> str | None:
        return self.headers.get("x-switchyard-upstream")

    @property
    def attempts(self) -> int:
        return int(self.headers["x-switchyard-attempts"])

    @property
    def cache(self) -> str | None:
        return self.headers.get("x-switchyard-cache")

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")


def ask(
    sdk: openai.OpenAI,
    endpoint: str,
    model_name: str,
    prompt: str = "hello there",
    *,
    stream: bool = False,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> Answer:
    """One call through the official SDK, on either endpoint, streamed or not; `prompt` is the
    user message (`params` may hold any request field, `text` of the Responses API included)."""
    try:
        if endpoint == CHAT:
            return _ask_chat(sdk, model_name, prompt, stream, headers, params)
        return _ask_responses(sdk, model_name, prompt, stream, headers, params)
    except openai.APIStatusError as error:
        body = error.response.json()
        assert set(body) == {"error"}, f"not an OpenAI error body: {body}"
        return Answer(error.status_code, error.response.headers, error=dict(body["error"]))


def _ask_chat(
    sdk: openai.OpenAI,
    model_name: str,
    prompt: str,
    stream: bool,
    headers: dict[str, str] | None,
    params: dict[str, Any],
) -> Answer:
    messages = params.pop("messages", [{"role": "user", "content": prompt}])
    create = sdk.chat.completions
    if not stream:
        raw = create.with_raw_response.create(
            model=model_name, messages=messages, extra_headers=headers, **params
        )
        completion = raw.parse()
        usage = completion.usage.model_dump() if completion.usage else None
        text_out = completion.choices[0].message.content or ""
        return Answer(
            raw.status_code, raw.headers, text_out, usage, completed=True, id=completion.id
        )
    with create.with_streaming_response.create(
        model=model_name, messages=messages, stream=True, extra_headers=headers, **params
    ) as raw:
        answer = Answer(raw.status_code, raw.headers)
        parts: list[str] = []
        try:
            for chunk in raw.parse():
                answer.events.append(chunk)
                answer.id = chunk.id
                parts.extend(choice.delta.content or "" for choice in chunk.choices)
                if any(choice.finish_reason for choice in chunk.choices):
                    answer.completed = True
                if chunk.usage is not None:
                    answer.usage = chunk.usage.model_dump()
        except openai.APIError as error:  # an error event in the stream
            answer.error = error.body if isinstance(error.body, dict) else {"message": str(error)}
            answer.completed = False
        answer.text = "".join(parts)
        return answer


def _ask_responses(
    sdk: openai.OpenAI,
    model_name: str,
    prompt: str,
    stream: bool,
    headers: dict[str, str] | None,
    params: dict[str, Any],
) -> Answer:
    create = sdk.responses
    input_value = params.pop("input", prompt)
    if not stream:
        raw = create.with_raw_response.create(
            model=model_name, input=input_value, extra_headers=headers, **params
        )
        response = raw.parse()
        usage = response.usage.model_dump() if response.usage else None
        return Answer(
            raw.status_code,
            raw.headers,
            response.output_text,
            usage,
            completed=True,
            id=response.id,
        )
    with create.with_streaming_response.create(
        model=model_name, input=input_value, stream=True, extra_headers=headers, **params
    ) as raw:
        answer = Answer(raw.status_code, raw.headers)
        parts = []
        for event in raw.parse():
            answer.events.append(event)
            if event.type == "response.output_text.delta":
                parts.append(event.delta)
            elif event.type in {"response.completed", "response.incomplete"}:
                answer.completed = True
                answer.id = event.response.id
                if event.response.usage is not None:
                    answer.usage = event.response.usage.model_dump()
            elif event.type == "error":
                answer.error = event.model_dump()
        answer.text = "".join(parts)
        return answer


# --------------------------------------------------------------------------- metrics


@dataclass
class Metrics:
    """A parsed Prometheus exposition, by sample name (`switchyard_requests_total`, ...)."""

    samples: list[Sample]
    families: set[str]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples, families = [], set()
        for family in text_string_to_metric_families(text):
            families.add(family.name)
            samples.extend(family.samples)
        return cls(samples, families)

    def select(self, name: str, **labels: str) -> list[Sample]:
        return [
            sample
            for sample in self.samples
            if sample.name == name
            and all(sample.labels.get(key) == value for key, value in labels.items())
        ]

    def total(self, name: str, **labels: str) -> float:
        return math.fsum(sample.value for sample in self.select(name, **labels))

    def has(self, name: str) -> bool:
        return any(sample.name == name for sample in self.samples)


def concurrently(jobs: Iterable[Callable[[], T]], workers: int = 8) -> list[T]:
    """Run the jobs on a thread pool; results in the order given; any exception is raised."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]


def usage_of(gateway: Gateway, key: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/v1/usage",
        params=params,
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def admin_usage(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.url}/admin/usage", headers={"authorization": f"Bearer {key}"}, timeout=10
    )


def records_of(gateway: Gateway, key: str, **params: Any) -> dict[str, Any]:
    response = usage_of(gateway, key, limit=10_000, **params)
    assert response.status_code == 200, response.text
    return dict(response.json())
