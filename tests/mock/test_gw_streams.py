"""Streams after their first byte (contract section 3, "Routing"): an upstream failure ends the
stream with an OpenAI-format error event and is never retried elsewhere; a client that leaves
takes the upstream request with it.

Read with raw HTTP: what matters here is exactly which events reached the wire.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    EACH_ENDPOINT,
    PATHS,
    Gateway,
    Gateways,
    ask,
    calls,
    logged,
    mock_upstream,
    model,
    proxy_config,
    read_stream,
    read_until,
    reply_to,
    request_body,
    stream_completed,
    stream_error_event,
    stream_text,
    unique,
    wait_for,
)

TEXT = "one two three four five six seven eight nine ten"


def stream_through(
    gateway: Gateway, endpoint: str, text: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, str]:
    body = request_body(endpoint, "m", text, stream=True)
    return read_stream(gateway.http(), endpoint, body, headers)


def assert_is_openai_error_event(endpoint: str, event: dict[str, Any] | None) -> None:
    assert event is not None, "the stream must end with an error event, not silently"
    if endpoint == CHAT:
        assert {"message", "type", "param", "code"} <= set(event)
    else:
        assert event["type"] == "error"
        assert isinstance(event.get("message"), str) and event["message"]


def two_upstreams(gateways: Gateways, **first_settings: Any) -> tuple[Gateway, str, str]:
    first, second = unique("ms-first"), unique("ms-second")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(first, **first_settings), mock_upstream(second)],
            # Ties go to config order: `first` is always tried first.
            [model("m", [first, second], strategy="least_in_flight")],
            retry={"max_attempts": 3, "attempts_per_upstream": 2},
        )
    )
    return gateway, first, second


@pytest.mark.parametrize("fault", ["disconnect", "stream_error"])
@EACH_ENDPOINT
def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, fault: str, endpoint: str
) -> None:
    gateway, first, second = two_upstreams(gateways)
    mock_control.add_fault({"type": fault, "after_chunks": 2}, times=1, upstream=first, tag=tag)

    response, raw = stream_through(gateway, endpoint, TEXT)

    assert response.status_code == 200
    assert response.headers["x-switchyard-upstream"] == first
    assert stream_text(endpoint, raw) == "reply 1:", "the two words sent before the fault"
    assert_is_openai_error_event(endpoint, stream_error_event(endpoint, raw))
    assert not stream_completed(endpoint, raw)
    # Bytes already reached the client: neither a retry nor a fallback can be spliced in.
    assert calls(mock_control, tag, first) == 1
    assert calls(mock_control, tag, second) == 0


@pytest.mark.parametrize(
    ("limit", "gap_ms"),
    [
        # The first event comes at once, then every gap is far longer than the idle limit.
        ({"idle_timeout_ms": 300}, 3000),
        # Each gap is well inside any idle limit, but the whole stream would take about 3 s.
        ({"total_timeout_ms": 600}, 150),
    ],
    ids=["idle-upstream", "total-timeout"],
)
@EACH_ENDPOINT
@pytest.mark.slow
def test_a_stream_cut_by_a_timeout_mid_way_ends_with_an_error_event(
    gateways: Gateways,
    mock_control: testing.MockControl,
    tag: str,
    endpoint: str,
    limit: dict[str, int],
    gap_ms: int,
) -> None:
    gateway, first, second = two_upstreams(gateways, **limit)
    mock_control.add_fault(
        {"type": "latency", "between_chunks_ms": gap_ms}, times=1, upstream=first, tag=tag
    )

    response, raw = stream_through(gateway, endpoint, TEXT)

    assert response.status_code == 200
    assert_is_openai_error_event(endpoint, stream_error_event(endpoint, raw))
    assert not stream_completed(endpoint, raw)
    received = stream_text(endpoint, raw)
    assert reply_to(TEXT).startswith(received) and received != reply_to(TEXT)
    assert calls(mock_control, tag, second) == 0


@EACH_ENDPOINT
@pytest.mark.slow
def test_a_client_leaving_mid_stream_cancels_the_upstream_request(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str
) -> None:
    lone = unique("leaver")
    gateway = gateways.start(proxy_config([mock_upstream(lone)], [model("m", [lone])]))
    # Forty words, 200 ms apart: left alone the upstream would stream for about 8 s.
    text = " ".join(f"word{index}" for index in range(40))
    body = request_body(endpoint, "m", text, stream=True)
    slow = {"x-mock-fault": "type=latency;between_chunks_ms=200"}
    with gateway.http().stream("POST", PATHS[endpoint], json=body, headers=slow) as response:
        assert response.status_code == 200
        # Once the first word arrives, leave (closing an unread response drops it).
        read_until(response, endpoint, bool)

    entry = wait_for(
        lambda: next(
            (e for e in logged(mock_control, tag, lone) if e["outcome"] is not None), None
        ),
        what="the upstream request to end",
        timeout=4,
    )
    assert entry["outcome"] == "cancelled"


@EACH_ENDPOINT
@pytest.mark.slow
def test_the_sdk_reports_the_mid_stream_failure_as_an_error(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str
) -> None:
    gateway, first, second = two_upstreams(gateways)
    mock_control.add_fault({"type": "disconnect", "after_chunks": 2}, upstream=first, tag=tag)

    answer = ask(gateway.sdk(), endpoint, "m", TEXT, stream=True)

    # Chat: the SDK raises on the `data: {"error": ...}` event; Responses: an `error` event.
    assert answer.error is not None
    assert not answer.completed
    assert answer.text == "reply 1:"
    assert calls(mock_control, tag, second) == 0
