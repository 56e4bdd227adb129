"""An upstream that misbehaves (contract section 2, "Upstream misbehaviour"): broken bodies,
broken event streams, streams that end early, resets, hangs and slow drips. Each maps to a
documented status or error event within the configured timeouts, on chat, on responses passed
through and on responses translated onto chat, streamed or not; and the ledger records each
request exactly once, with that status.

The client waits generously (30 s); nothing here asserts how long anything took: a proxy that
ignored its timeouts would make the client time out, which fails the test. A test that waits for
a limit to run out gets that limit short, and checks the proxy's log names the one that ran out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from harness.pytest.gateway import (
    CHAT,
    PATHS,
    RESPONSES,
    Gateway,
    Gateways,
    Keys,
    mock_upstream,
    model,
    proxy_config,
    read_stream,
    records_of,
    reply_to,
    request_body,
    stream_completed,
    stream_error_event,
    stream_text,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.robustness, pytest.mark.slow]

TEXT = "one two three four five six"
# Each attempt: headers within 1 s, no gap over 500 ms, the whole within 2.5 s. A test that must
# finish within the limits gets these (a body dripped in small pieces takes a while on a busy
# machine).
TIMEOUTS = {"timeout_ms": 1000, "idle_timeout_ms": 500, "total_timeout_ms": 2500}
# A test that waits for one limit to run out gets that one shorter and the others as above: a
# hang never ends, and a drip's 40-50 ms gaps stay far inside the idle limit, so the same limit
# runs out, sooner. What the proxy then logs for the request names the limit (or, for a whole
# body, that it stalled: the idle and the total limit end a body alike).
HEAD = {**TIMEOUTS, "timeout_ms": 200}
IDLE = {**TIMEOUTS, "idle_timeout_ms": 250}
TOTAL = {**TIMEOUTS, "total_timeout_ms": 1000}
NO_HEAD = "upstream timed out before responding"
BODY_STALLED = "upstream body stalled"
STREAM_IDLE = 'cause="idle timeout"'
STREAM_TOTAL = 'cause="total timeout"'
# Responses on an upstream that speaks them, and translated onto one that only speaks chat.
TRANSLATED = "translated"
ROUTES = {CHAT: "m", RESPONSES: "m", TRANSLATED: "chat-only"}
EACH_ROUTE = pytest.mark.parametrize("route", [CHAT, RESPONSES, TRANSLATED])


@dataclass
class Setup:
    gateway: Gateway
    key: str


@pytest.fixture
def limits() -> dict[str, int]:
    """The upstreams' timeouts; a test that waits for one to run out parametrizes this."""
    return TIMEOUTS


@pytest.fixture
def setup(gateways: Gateways, limits: dict[str, int]) -> Setup:
    native, chat_only = unique("rb-native"), unique("rb-chat")
    keys = Keys.make("acme")
    config = proxy_config(
        [
            mock_upstream(native, **limits),
            mock_upstream(chat_only, responses=False, **limits),
        ],
        [model("m", [native]), model("chat-only", [chat_only])],
        # One attempt: the status a fault maps to, not the outcome of a retry.
        retry={"max_attempts": 1},
        keys=keys,
        ledger={"backend": "memory"},
    )
    return Setup(gateways.start(config, keys.env()), keys.tenants["acme"])


@dataclass
class Outcome:
    """What the client got, and what the ledger recorded for it."""

    status: int
    # The error body's or the final error event's code.
    code: str | None
    text: str
    completed: bool
    raw: str
    record: dict[str, Any]


def endpoint_of(route: str) -> str:
    return CHAT if route == CHAT else RESPONSES


def call(setup: Setup, route: str, fault: str, *, stream: bool, request_id: str) -> Outcome:
    endpoint = endpoint_of(route)
    body = request_body(endpoint, ROUTES[route], TEXT, stream=stream)
    headers = {"x-mock-fault": fault, "x-request-id": request_id}
    client = setup.gateway.http(setup.key, timeout=30)
    if stream:
        response, raw = read_stream(client, endpoint, body, headers)
    else:
        response = client.post(PATHS[endpoint], json=body, headers=headers)
        raw = response.text
    code, text, completed = None, "", False
    if response.status_code != 200:
        error = json.loads(raw)["error"]
        assert set(error) >= {"message", "type", "param", "code"}, error
        code = error["code"]
    elif stream:
        event = stream_error_event(endpoint, raw)
        code = event["code"] if event else None
        text = stream_text(endpoint, raw)
        completed = stream_completed(endpoint, raw)
    else:
        answer = json.loads(raw)
        if endpoint == CHAT:
            text = answer["choices"][0]["message"]["content"]
        else:
            text = answer["output"][0]["content"][0]["text"]
        completed = True
    records = [
        record
        for record in records_of(setup.gateway, setup.key)["records"]
        if record["request_id"] == request_id
    ]
    assert len(records) == 1, f"exactly one ledger record per request: {records}"
    return Outcome(response.status_code, code, text, completed, raw, records[0])


def assert_logged(setup: Setup, request_id: str, line: str) -> None:
    """The proxy logged `line` for the request: which limit ran out, or that a body stalled."""

    def logged() -> list[str]:
        return [
            entry for entry in setup.gateway.log_text().splitlines() if f"={request_id} " in entry
        ]

    wait_for(lambda: any(line in entry for entry in logged()), what=f"{line!r} in the log")


# --------------------------------------------------------------------------- whole answers


@EACH_ROUTE
@pytest.mark.parametrize(
    ("fault", "status", "code", "limits", "logged"),
    [
        ("type=malformed_body", 502, "upstream_bad_response", TIMEOUTS, None),
        ("type=reset", 502, "upstream_unreachable", TIMEOUTS, None),
        ("type=truncate", 502, "upstream_disconnected", TIMEOUTS, None),
        ("type=hang", 504, "upstream_timeout", HEAD, NO_HEAD),
        ("type=hang;after_chunks=0", 504, "upstream_timeout", IDLE, BODY_STALLED),
        # Each byte well inside the idle limit, the whole far beyond the total one.
        ("type=drip;bytes_per_write=1;delay_ms=40", 504, "upstream_timeout", TOTAL, BODY_STALLED),
    ],
    ids=["malformed-body", "reset", "cut-body", "hang-before-headers", "hang-mid-body", "drip"],
)
def test_a_broken_whole_answer_is_a_documented_error(
    setup: Setup, tag: str, route: str, fault: str, status: int, code: str, logged: str | None
) -> None:
    outcome = call(setup, route, fault, stream=False, request_id=f"whole-{tag}")
    assert (outcome.status, outcome.code) == (status, code)
    assert outcome.record["status"] == status
    assert (outcome.record["prompt_tokens"], outcome.record["cost"]) == (0, 0)
    if logged is not None:
        assert_logged(setup, f"whole-{tag}", logged)


@EACH_ROUTE
def test_a_whole_body_dripped_byte_by_byte_within_the_limits_arrives_intact(
    setup: Setup, tag: str, route: str
) -> None:
    outcome = call(
        setup, route, "type=drip;bytes_per_write=3;delay_ms=1", stream=False, request_id=tag
    )
    assert outcome.status == 200
    assert outcome.text == reply_to(TEXT)
    assert outcome.record["status"] == 200
    assert outcome.record["completion_tokens"] == len(reply_to(TEXT).split())


# --------------------------------------------------------------------------- streams


@EACH_ROUTE
@pytest.mark.parametrize(
    ("fault", "status", "code", "limits", "logged"),
    [
        ("type=reset", 502, "upstream_unreachable", TIMEOUTS, None),
        ("type=hang", 504, "upstream_timeout", HEAD, NO_HEAD),
        # A 200 that is not an event stream, and not JSON either.
        ("type=malformed_body", 502, "upstream_bad_response", TIMEOUTS, None),
        # A 200 with the whole JSON answer: an upstream that ignores `stream`.
        ("type=ignore_stream", 502, "upstream_bad_response", TIMEOUTS, None),
    ],
    ids=["reset", "hang", "malformed-body", "whole-json"],
)
def test_a_stream_that_fails_before_its_first_byte_is_an_error_status(
    setup: Setup, tag: str, route: str, fault: str, status: int, code: str, logged: str | None
) -> None:
    outcome = call(setup, route, fault, stream=True, request_id=f"early-{tag}")
    assert (outcome.status, outcome.code) == (status, code)
    assert outcome.record["status"] == status
    if logged is not None:
        assert_logged(setup, f"early-{tag}", logged)


@EACH_ROUTE
@pytest.mark.parametrize(
    ("fault", "status", "code", "limits", "logged"),
    [
        ("type=malformed_chunk;after_chunks=2", 502, "upstream_bad_response", TIMEOUTS, None),
        ("type=not_sse;after_chunks=2", 502, "upstream_bad_response", TIMEOUTS, None),
        ("type=truncate;after_chunks=2", 502, "upstream_truncated", TIMEOUTS, None),
        ("type=disconnect;after_chunks=2", 502, "upstream_disconnected", TIMEOUTS, None),
        ("type=hang;after_chunks=2", 504, "upstream_timeout", IDLE, STREAM_IDLE),
    ],
    ids=["not-json", "not-sse", "ends-early", "reset", "hang"],
)
def test_a_stream_broken_after_its_first_byte_ends_with_an_error_event(
    setup: Setup, tag: str, route: str, fault: str, status: int, code: str, logged: str | None
) -> None:
    outcome = call(setup, route, fault, stream=True, request_id=f"mid-{tag}")
    assert outcome.status == 200
    assert outcome.code == code, outcome.raw[-600:]
    assert not outcome.completed
    # Exactly the two words sent before the fault, nothing made up, nothing after it.
    assert outcome.text == "reply 1:"
    assert "{not json" not in outcome.raw
    assert "\nthis line is not server-sent events" not in outcome.raw
    assert outcome.record["status"] == status
    assert outcome.record["cost"] == 0
    if logged is not None:
        assert_logged(setup, f"mid-{tag}", logged)


@EACH_ROUTE
@pytest.mark.parametrize("limits", [TOTAL], ids=["short-total"])
def test_a_stream_that_drips_past_the_total_timeout_ends_with_an_error_event(
    setup: Setup, tag: str, route: str
) -> None:
    # About 20 bytes a second: every gap is far inside the idle limit, the stream would take
    # minutes, and the total timeout cuts it.
    fault = "type=drip;bytes_per_write=1;delay_ms=50"
    outcome = call(setup, route, fault, stream=True, request_id=f"drip-{tag}")
    assert outcome.status == 200
    assert outcome.code == "upstream_timeout"
    assert not outcome.completed
    assert reply_to(TEXT).startswith(outcome.text) and outcome.text != reply_to(TEXT)
    assert outcome.record["status"] == 504
    assert_logged(setup, f"drip-{tag}", STREAM_TOTAL)


@EACH_ROUTE
def test_a_stream_dripped_in_small_pieces_within_the_limits_is_relayed_whole(
    setup: Setup, tag: str, route: str
) -> None:
    # Pieces smaller than an event, so events arrive split across reads; few enough (about a
    # hundred) that a busy machine still delivers them well inside total_timeout_ms.
    fault = "type=drip;bytes_per_write=16;delay_ms=1"
    outcome = call(setup, route, fault, stream=True, request_id=f"drip-ok-{tag}")
    assert outcome.status == 200
    assert outcome.code is None
    assert outcome.completed
    assert outcome.text == reply_to(TEXT)
    assert outcome.record["status"] == 200
    assert outcome.record["completion_tokens"] == len(reply_to(TEXT).split())


@pytest.mark.parametrize("route", [CHAT, TRANSLATED])
def test_a_chat_stream_that_finished_but_sent_no_done_is_complete(
    setup: Setup, tag: str, route: str
) -> None:
    outcome = call(setup, route, "type=no_done", stream=True, request_id=f"nodone-{tag}")
    assert outcome.status == 200
    assert outcome.code is None
    assert outcome.completed, "the finish chunk came: the answer is whole"
    assert outcome.text == reply_to(TEXT)
    if route == CHAT:
        assert outcome.raw.endswith("data: [DONE]\n\n"), "added for the client"
    assert outcome.record["status"] == 200
    # The proxy asked for the usage chunk, which the mock still sent.
    assert outcome.record["completion_tokens"] == len(reply_to(TEXT).split())


def test_a_responses_stream_without_its_completion_event_is_truncated(
    setup: Setup, tag: str
) -> None:
    outcome = call(setup, RESPONSES, "type=no_done", stream=True, request_id=f"nodone-{tag}")
    assert outcome.status == 200
    assert outcome.code == "upstream_truncated"
    assert not outcome.completed
    assert outcome.text == reply_to(TEXT), "every delta before the missing event went through"
    assert outcome.record["status"] == 502


def test_the_sdk_sees_a_broken_stream_as_an_api_error(setup: Setup, tag: str) -> None:
    """A relayed corrupt chunk would surface as a JSON decoding error inside the SDK; the error
    event surfaces as the SDK's own APIError."""
    import openai

    sdk = setup.gateway.sdk(setup.key, headers={"x-mock-fault": "type=malformed_chunk"})
    with pytest.raises(openai.APIError) as raised:
        list(
            sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": TEXT}], stream=True
            )
        )
    assert "not JSON" in str(raised.value)


def test_the_proxy_stays_healthy_after_every_fault(setup: Setup, tag: str) -> None:
    faults = [
        "type=malformed_body",
        "type=reset",
        "type=truncate",
        "type=not_sse;after_chunks=1",
        "type=malformed_chunk;after_chunks=1",
        "type=disconnect;after_chunks=1",
    ]
    for index, fault in enumerate(faults):
        for stream in (False, True):
            call(setup, CHAT, fault, stream=stream, request_id=f"{tag}-{index}-{stream}")
    assert httpx.get(f"{setup.gateway.url}/health", timeout=10).status_code == 200
    outcome = call(setup, CHAT, "type=latency", stream=True, request_id=f"{tag}-after")
    assert outcome.completed and outcome.text == reply_to(TEXT)
    records = records_of(setup.gateway, setup.key)["records"]
    assert len(records) == len(faults) * 2 + 1
