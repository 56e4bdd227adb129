"""The mock upstream on its own, for the tests of its wire (tests/unit/test_mock_*.py): a mock
started through its CLI (`python -m harness.mock`), clients of it, its request log, and the
checks of its SSE framing (docs/contracts.md section 1).

The framing checks split a body as it was sent, on purpose: they assert the exact events the
mock writes (each ends with a blank line; a chat event is one `data: ` line; a Responses event
is an `event: ` line, then a `data: ` line). What each event carries is read by the one SSE
reader, `harness.sse.sse_events`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai

from harness.pytest.stacks import standalone_mock
from harness.runtime.poll import wait_until
from harness.runtime.process import Service
from harness.sse import sse_events


@contextlib.contextmanager
def running_mock(label: str = "mock") -> Iterator[tuple[str, Service]]:
    """A mock started through its CLI, in a stack of its own owned by the run; always stopped
    on exit (and by the next harness command, should the run die first)."""
    private, service = standalone_mock(label)
    try:
        yield service.url, service
    finally:
        private.down()


def sdk(mock_url: str, upstream: str, tag: str | None = None, **options: Any) -> openai.OpenAI:
    headers = {"x-mock-tag": tag} if tag else None
    return openai.OpenAI(
        base_url=f"{mock_url}/{upstream}/v1",
        api_key="sk-test-key",
        max_retries=0,
        default_headers=headers,
        _strict_response_validation=True,
        **options,
    )


def chat_body(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": "mock-chat", "messages": [{"role": "user", "content": text}], **extra}


# --------------------------------------------------------------------------- SSE framing


def wire_events(raw: str) -> list[str]:
    """The events of an SSE body as sent; every event must end with a blank line."""
    assert raw.endswith("\n\n"), raw[-200:]
    return raw[:-2].split("\n\n")


def chat_payloads(events: list[str]) -> list[dict[str, Any]]:
    """The JSON chunks of a chat stream's events (not `[DONE]`); each is one `data: ` line."""
    assert all(event.startswith("data: ") for event in events)
    return [
        json.loads(data) for event in events for _, data in sse_events(event) if data != "[DONE]"
    ]


def response_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, payload) of a Responses stream; each event is an `event: ` and a `data: ` line."""
    parsed = []
    for event in wire_events(raw):
        event_line, data_line = event.split("\n")
        assert event_line.startswith("event: ")
        assert data_line.startswith("data: ")
        [(name, data)] = sse_events(event)
        assert name is not None
        parsed.append((name, json.loads(data)))
    return parsed


# --------------------------------------------------------------------------- the request log


def log_entries(http: httpx.Client, **selectors: Any) -> list[dict[str, Any]]:
    reply = http.get("/_mock/requests", params=selectors)
    assert reply.status_code == 200
    return list(reply.json()["requests"])


def cancelled_entry(http: httpx.Client, upstream: str) -> dict[str, Any]:
    """The log entry of a request the client gave up on (logged once the mock notices)."""

    def cancelled() -> list[dict[str, Any]]:
        return [e for e in log_entries(http, upstream=upstream) if e["outcome"] == "cancelled"]

    return wait_until(cancelled, what="a request logged as cancelled", timeout=10, cap=0.02)[0]
