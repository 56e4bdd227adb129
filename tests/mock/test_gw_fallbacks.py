"""Retries and fallbacks before the first byte (contract section 3, "Routing"): each fault type
moves the request on to the next candidate, Retry-After is honoured, and the attempts are
bounded by `max_attempts`, `attempts_per_upstream` and `deadline_ms`.

The models use `least_in_flight`: with one request at a time every upstream ties, and ties go to
config order, so the first upstream listed is always the one tried first.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    EACH_ENDPOINT,
    EACH_MODE,
    ENDPOINTS,
    Gateways,
    ask,
    calls,
    logged,
    mock_upstream,
    model,
    proxy_config,
    reply_to,
    unique,
    unreachable_upstream,
    wait_for,
)

# Faults that happen before the first byte, by how they are produced; None: nothing listens.
FAULTS: dict[str, dict[str, Any] | None] = {
    "connect-refused": None,
    "hang": {"type": "hang"},
    "reset": {"type": "reset"},
    "429": {"type": "status", "status": 429},
    "500": {"type": "status", "status": 500},
    "503": {"type": "status", "status": 503},
}
# Short enough that a hang becomes a timeout quickly, long enough for a loaded machine.
TTFB_TIMEOUT_MS = 300
# Retries on one upstream without a meaningful backoff, so only Retry-After can make them wait.
NO_BACKOFF = {"base_backoff_ms": 1, "max_backoff_ms": 1}
# Never eject during these tests: they count attempts, and ejection would change the candidates.
NEVER_EJECT = {"failure_threshold": 1000}


@pytest.mark.parametrize("fault", list(FAULTS))
@EACH_ENDPOINT
@EACH_MODE
def test_a_failed_first_upstream_falls_back_to_the_next_with_the_request_unchanged(
    gateways: Gateways,
    mock_control: testing.MockControl,
    tag: str,
    fault: str,
    endpoint: str,
    stream: bool,
) -> None:
    first, second = unique("fb-first"), unique("fb-second")
    spec = FAULTS[fault]
    first_upstream = (
        unreachable_upstream(first)
        if spec is None
        else mock_upstream(first, timeout_ms=TTFB_TIMEOUT_MS)
    )
    gateway = gateways.start(
        proxy_config(
            [first_upstream, mock_upstream(second)],
            [model("m", [first, second], strategy="least_in_flight")],
            retry={"max_attempts": 3, "attempts_per_upstream": 1},
        )
    )
    if spec is not None:
        mock_control.add_fault(spec, times=1, upstream=first, tag=tag)
    request_id = f"req-{tag}"
    metadata = {"ticket": "T-17", "team": "gateway"}

    answer = ask(
        gateway.sdk(),
        endpoint,
        "m",
        "please fall back",
        stream=stream,
        headers={"x-request-id": request_id},
        metadata=metadata,
        user="user-42",
    )

    assert answer.status == 200, answer.error
    assert answer.text == reply_to("please fall back")
    assert answer.upstream == second
    assert answer.headers["x-mock-upstream"] == second
    assert answer.attempts == 2
    assert answer.request_id == request_id
    assert calls(mock_control, tag, second) == 1
    attempts = logged(mock_control, tag, second)
    if spec is not None:
        assert calls(mock_control, tag, first) == 1
        attempts = logged(mock_control, tag, first) + attempts
    for attempt in attempts:
        assert attempt["headers"]["x-request-id"] == request_id
        assert attempt["body"]["metadata"] == metadata
        assert attempt["body"]["user"] == "user-42"
    if fault == "hang":
        # The attempt given up on is dropped, not left running: the mock sees its client leave.
        wait_for(
            lambda: logged(mock_control, tag, first)[0]["outcome"] == "cancelled",
            what="the hung attempt to be cancelled",
        )


@EACH_ENDPOINT
@EACH_MODE
def test_a_fallback_model_serves_when_the_models_own_upstreams_fail(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    own, spare = unique("fm-own"), unique("fm-spare")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(own), mock_upstream(spare)],
            [
                model("primary", [own], fallback_models=["backup"]),
                model("backup", [spare], upstream_model="backup-upstream-model"),
            ],
        )
    )
    mock_control.add_fault({"type": "status", "status": 503}, times=1, upstream=own, tag=tag)

    answer = ask(gateway.sdk(), endpoint, "primary", "use the backup", stream=stream)

    assert answer.status == 200, answer.error
    assert answer.text == reply_to("use the backup")
    assert (answer.upstream, answer.attempts) == (spare, 2)
    [served] = logged(mock_control, tag, spare)
    # The fallback model's own upstream model name is what its upstream is asked for.
    assert served["model"] == "backup-upstream-model"
    assert calls(mock_control, tag, own) == 1


@EACH_ENDPOINT
@EACH_MODE
def test_an_exhausted_chain_returns_the_last_error_with_the_attempt_count(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    first, second, spare = unique("ex-first"), unique("ex-second"), unique("ex-spare")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(first), mock_upstream(second), mock_upstream(spare)],
            [
                model("m", [first, second], strategy="least_in_flight", fallback_models=["b"]),
                model("b", [spare]),
            ],
            retry={"max_attempts": 5, "attempts_per_upstream": 1},
        )
    )
    for upstream, status in ((first, 500), (second, 503), (spare, 429)):
        mock_control.add_fault({"type": "status", "status": status}, upstream=upstream, tag=tag)

    answer = ask(gateway.sdk(), endpoint, "m", "nobody can answer", stream=stream)

    # Three candidates, one attempt each; the last one's error is what the client gets.
    assert answer.status == 429
    assert answer.error is not None
    assert {"message", "type", "param", "code"} <= set(answer.error)
    assert answer.error["code"] == "rate_limit_exceeded"
    assert (answer.upstream, answer.attempts) == (spare, 3)
    for upstream in (first, second, spare):
        assert calls(mock_control, tag, upstream) == 1


@EACH_ENDPOINT
@EACH_MODE
def test_a_failing_upstream_gets_exactly_attempts_per_upstream_calls(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    lone = unique("three-calls")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(lone)],
            [model("m", [lone])],
            retry={"max_attempts": 3, "attempts_per_upstream": 3, **NO_BACKOFF},
            health=NEVER_EJECT,
        )
    )
    mock_control.add_fault({"type": "status", "status": 500}, times=100, upstream=lone, tag=tag)

    answer = ask(gateway.sdk(), endpoint, "m", "keeps failing", stream=stream)

    assert answer.status == 500
    assert answer.attempts == 3
    assert calls(mock_control, tag, lone) == 3


@pytest.mark.parametrize(
    ("per_upstream", "first_calls", "second_calls"),
    [(5, 3, 0), (2, 2, 1)],
    ids=["retries-use-up-the-budget", "retry-then-fallback"],
)
@EACH_ENDPOINT
@EACH_MODE
def test_max_attempts_bounds_retries_and_fallbacks_together(
    gateways: Gateways,
    mock_control: testing.MockControl,
    tag: str,
    per_upstream: int,
    first_calls: int,
    second_calls: int,
    endpoint: str,
    stream: bool,
) -> None:
    first, second = unique("ma-first"), unique("ma-second")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(first), mock_upstream(second)],
            [model("m", [first, second], strategy="least_in_flight")],
            retry={"max_attempts": 3, "attempts_per_upstream": per_upstream, **NO_BACKOFF},
            health=NEVER_EJECT,
        )
    )
    for upstream in (first, second):
        mock_control.add_fault({"type": "status", "status": 503}, 100, upstream=upstream, tag=tag)

    answer = ask(gateway.sdk(), endpoint, "m", "all down", stream=stream)

    assert answer.status == 503
    assert answer.attempts == 3
    assert calls(mock_control, tag, first) == first_calls
    assert calls(mock_control, tag, second) == second_calls


@pytest.mark.parametrize("status", [400, 404, 422])
@EACH_ENDPOINT
def test_a_non_retryable_status_is_returned_at_once(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, status: int, endpoint: str
) -> None:
    first, second = unique("nr-first"), unique("nr-second")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(first), mock_upstream(second)],
            [model("m", [first, second], strategy="least_in_flight")],
            retry={"max_attempts": 3, "attempts_per_upstream": 2},
        )
    )
    mock_control.add_fault({"type": "status", "status": status}, times=1, upstream=first, tag=tag)

    answer = ask(gateway.sdk(), endpoint, "m", "a client mistake")

    assert answer.status == status
    assert (answer.upstream, answer.attempts) == (first, 1)
    assert calls(mock_control, tag, first) == 1
    assert calls(mock_control, tag, second) == 0


# OpenAI's retry-after-ms on every endpoint and mode, and Retry-After in whole seconds once: the
# proxy reads both headers of any failed attempt in one place (dispatch's `retry_after`).
RETRY_AFTER = [
    pytest.param({"retry_after": 1}, 0.9, CHAT, False, id="retry-after-seconds-whole-chat"),
    *(
        pytest.param(
            {"retry_after_ms": 400}, 0.35, endpoint, stream, id=f"retry-after-ms-{mode}-{endpoint}"
        )
        for endpoint in ENDPOINTS
        for stream, mode in ((False, "whole"), (True, "stream"))
    ),
]


@pytest.mark.parametrize(("retry_after", "waits_at_least", "endpoint", "stream"), RETRY_AFTER)
@pytest.mark.slow
def test_retry_after_is_honoured_before_trying_the_same_upstream_again(
    gateways: Gateways,
    mock_control: testing.MockControl,
    tag: str,
    retry_after: dict[str, int],
    waits_at_least: float,
    endpoint: str,
    stream: bool,
) -> None:
    lone = unique("retry-after")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(lone)],
            [model("m", [lone])],
            retry={
                "max_attempts": 2,
                "attempts_per_upstream": 2,
                "respect_retry_after": True,
                "max_retry_after_ms": 5000,
                **NO_BACKOFF,
            },
        )
    )
    sdk = gateway.sdk()
    # The SDK's first call of a kind is slow (imports, model building), which could pass for
    # a wait: warm it up, so that the timed call measures the proxy.
    assert ask(sdk, endpoint, "m", "warming up", stream=stream).status == 200
    mock_control.add_fault(
        {"type": "status", "status": 429, **retry_after}, times=1, upstream=lone, tag=tag
    )

    started = time.monotonic()
    answer = ask(sdk, endpoint, "m", "after a pause", stream=stream)
    elapsed = time.monotonic() - started

    assert answer.status == 200, answer.error
    assert (answer.upstream, answer.attempts) == (lone, 2)
    assert calls(mock_control, tag, lone) == 1 + 2
    # The configured backoff is 1 ms: only the upstream's Retry-After explains the wait.
    assert elapsed >= waits_at_least


def test_retry_after_is_capped_by_max_retry_after_ms(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    lone = unique("retry-cap")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(lone)],
            [model("m", [lone])],
            retry={
                "max_attempts": 2,
                "attempts_per_upstream": 2,
                "max_retry_after_ms": 200,
                **NO_BACKOFF,
            },
        )
    )
    mock_control.add_fault(
        {"type": "status", "status": 429, "retry_after": 60}, times=1, upstream=lone, tag=tag
    )
    # A client that gives up long before the minute the upstream asked for.
    answer = ask(gateway.sdk(timeout=10), "chat", "m", "not a minute")
    assert answer.status == 200, answer.error
    assert answer.attempts == 2
    assert calls(mock_control, tag, lone) == 2


@EACH_ENDPOINT
@EACH_MODE
@pytest.mark.slow
def test_the_deadline_stops_further_attempts(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    lone = unique("deadline")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(lone, timeout_ms=200)],
            [model("m", [lone])],
            retry={
                "max_attempts": 10,
                "attempts_per_upstream": 10,
                "deadline_ms": 500,
                **NO_BACKOFF,
            },
            health=NEVER_EJECT,
        )
    )
    mock_control.add_fault({"type": "hang"}, times=100, upstream=lone, tag=tag)

    answer = ask(gateway.sdk(), endpoint, "m", "too slow", stream=stream)

    assert answer.status == 504
    assert answer.error is not None and answer.error["code"] == "upstream_timeout"
    made = calls(mock_control, tag, lone)
    # Ten 200 ms attempts would take 2 s; a 500 ms deadline leaves room for about three.
    assert 1 <= made < 10
    assert answer.attempts == made


@EACH_ENDPOINT
@EACH_MODE
@pytest.mark.slow
def test_total_timeout_cuts_a_slow_attempt_and_falls_back(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, endpoint: str, stream: bool
) -> None:
    slow, spare = unique("tt-slow"), unique("tt-spare")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(slow, timeout_ms=10000, total_timeout_ms=300), mock_upstream(spare)],
            [model("m", [slow, spare], strategy="least_in_flight")],
        )
    )
    # Within the time-to-first-byte limit, but not within the whole-attempt limit.
    mock_control.add_fault(
        {"type": "latency", "first_byte_ms": 3000}, times=1, upstream=slow, tag=tag
    )

    answer = ask(gateway.sdk(), endpoint, "m", "take the spare", stream=stream)

    assert answer.status == 200, answer.error
    assert (answer.upstream, answer.attempts) == (spare, 2)
    assert calls(mock_control, tag, slow) == 1
