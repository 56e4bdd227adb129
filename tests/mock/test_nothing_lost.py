"""Nothing is lost under a mixed fault load (contract section 3, "Tenants, auth and the ledger").

One proxy of the test's own (SQLite ledger in the test's tmp_path, two tenants, the memory
cache, retries and a fallback model) gets a few hundred concurrent requests of a deliberate mix:
streams and whole answers on both endpoints, repeats that hit the cache, requests that fall back
from a failing primary upstream, clients that hang up mid-stream or give up before the first
byte, and upstream faults that end in an error (500 after retries, a hang that times out, a
reset, a 400 returned at once, an error event or a broken connection mid-stream, an unknown
model).

Afterwards every request id the clients sent is in the ledger exactly once, with the status the
client saw, and every ledger invariant holds: failed calls cost nothing, cache hits cost nothing
and keep the original tokens, requests the client abandons are 499s that cost what they consumed,
each tenant's totals are the sum of its records, the SQLite file itself holds the same rows, and
/stats and /metrics count exactly what the ledger holds.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    ENDPOINTS,
    PATHS,
    RESPONSES,
    Answer,
    Gateway,
    Gateways,
    Keys,
    admin_usage,
    ask,
    calls,
    concurrently,
    mock_upstream,
    model,
    proxy_config,
    read_until,
    records_of,
    reply_to,
    request_body,
    stream_text,
    unique,
    wait_for,
    words,
)

pytestmark = [pytest.mark.robustness, pytest.mark.mock, pytest.mark.slow]

STEADY, FAILOVER, STALLING, UNKNOWN = "steady", "failover", "stalling", "no-such-model"
# USD per million tokens, the same for every model, so a record's cost follows from its tokens
# whichever model served it.
PRICE = {"input": 1500.0, "output": 4000.0}
TENANT, OTHER = "acme", "globex"
# Each try on one upstream is repeated once; the fallback model's upstream gets the third.
RETRY = {
    "max_attempts": 3,
    "attempts_per_upstream": 2,
    "base_backoff_ms": 5,
    "max_backoff_ms": 20,
    "deadline_ms": 20_000,
}
# Never eject: the failures are on purpose, and ejection would change who is tried.
HEALTH = {"failure_threshold": 100_000, "cooldown_ms": 1000}
STALL_TIMEOUT_MS = 300
CUT_TEXT_WORDS = 30
WORKERS = 12
TOTAL_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
MODES = (False, True)

# How many requests of each kind, per (endpoint, mode) variant it applies to.
EVERY_VARIANT = {
    "ok": 20,  # a plain success
    "repeat": 10,  # an identical copy of an earlier success: a cache hit
    "fallback": 6,  # the primary upstream answers 500 twice, the fallback model serves it
    "failed": 5,  # 500 on every attempt
    "timeout": 2,  # the upstream never answers: 504 after each attempt timed out
    "reset": 4,  # the connection is reset before any header: 502
    "rejected": 2,  # a 400 from the upstream, returned at once
    "unknown": 1,  # a model the proxy does not know: 404, no upstream at all
    "client_gone": 2,  # the client gives up before the upstream's first byte
}
STREAMS_ONLY = {
    "stream_error": 6,  # an error event after two words
    "upstream_cut": 5,  # the upstream drops the connection after two words
    "client_cut": 8,  # the client hangs up after three words
}
OTHER_TENANT_REQUESTS = 12
# The status each kind's record must hold: the HTTP status the client got, except for a stream
# whose 200 head was already sent: it counts as the failure that ended it (an error event the
# client saw), or 499 when the client itself hung up.
STATUS = {
    "ok": 200,
    "repeat": 200,
    "fallback": 200,
    "failed": 500,
    "timeout": 504,
    "reset": 502,
    "rejected": 400,
    "unknown": 404,
    "stream_error": 502,
    "upstream_cut": 502,
    "client_cut": 499,
    "client_gone": 499,
}
FAULT_HEADERS = {
    "failed": "type=status;status=500",
    "timeout": "type=hang",
    "reset": "type=reset",
    "rejected": "type=status;status=400",
    "stream_error": "type=stream_error;after_chunks=2",
    "upstream_cut": "type=disconnect;after_chunks=2",
    "client_cut": "type=latency;between_chunks_ms=100",
    "client_gone": "type=latency;first_byte_ms=3000",
}
# Streams that broke after their head: the client got a 200, then an error event or nothing.
BROKEN_AFTER_HEAD = {"stream_error", "upstream_cut", "client_cut"}
# How long a client that gives up waits for the response head (the upstream takes 3 s).
GIVE_UP_AFTER = 0.5
BILLABLE = {"ok", "repeat", "fallback", "client_cut"}


@dataclass(frozen=True)
class Case:
    """One request of the mix."""

    kind: str
    endpoint: str
    stream: bool
    index: int
    tenant: str
    tag: str

    @property
    def request_id(self) -> str:
        mode = "stream" if self.stream else "whole"
        return f"{self.tenant}-{self.kind}-{self.endpoint}-{mode}-{self.index}-{self.tag}"

    @property
    def model(self) -> str:
        return {"fallback": FAILOVER, "timeout": STALLING, "unknown": UNKNOWN}.get(
            self.kind, STEADY
        )

    @property
    def text(self) -> str:
        # A repeat sends exactly what the success it copies sent; everything else is unique
        # (headers are not part of the cache key, so a fault must not share a body).
        kind = "ok" if self.kind == "repeat" else self.kind
        mode = "stream" if self.stream else "whole"
        base = f"{self.tenant} {kind} {self.endpoint} {mode} {self.index} {self.tag}"
        if self.kind == "client_cut":
            return base + " " + " ".join(f"w{n}" for n in range(CUT_TEXT_WORDS))
        return base

    def headers(self) -> dict[str, str]:
        headers = {"x-request-id": self.request_id}
        if self.kind in FAULT_HEADERS:
            headers["x-mock-fault"] = FAULT_HEADERS[self.kind]
        return headers


@dataclass
class Seen:
    """What a client saw: the HTTP status and headers it got, and for streams whether it ended
    normally or with an error event (or how many words it read before hanging up)."""

    case: Case
    status: int
    headers: httpx.Headers
    text: str = ""
    completed: bool = False
    error: dict[str, Any] | None = None
    words_read: int = 0

    @property
    def attempts(self) -> int | None:
        value = self.headers.get("x-switchyard-attempts")
        return None if value is None else int(value)


def the_mix(tag: str) -> tuple[list[Case], list[Case]]:
    """Two waves: the first has every success a repeat copies; the second has the repeats.
    Fault cases are split between the waves, and each wave is shuffled (a fixed seed)."""
    first: list[Case] = []
    second: list[Case] = []
    for endpoint in ENDPOINTS:
        for stream in MODES:
            for kind, count in EVERY_VARIANT.items():
                for index in range(count):
                    case = Case(kind, endpoint, stream, index, TENANT, tag)
                    if kind == "ok":
                        first.append(case)
                    elif kind == "repeat":
                        second.append(case)
                    else:
                        (first if index % 2 == 0 else second).append(case)
            if stream:
                for kind, count in STREAMS_ONLY.items():
                    for index in range(count):
                        case = Case(kind, endpoint, stream, index, TENANT, tag)
                        (first if index % 2 == 0 else second).append(case)
    for index in range(OTHER_TENANT_REQUESTS):
        endpoint, stream = ENDPOINTS[index % 2], index % 4 >= 2
        second.append(Case("ok", endpoint, stream, index, OTHER, tag))
    shuffler = random.Random(5)
    shuffler.shuffle(first)
    shuffler.shuffle(second)
    return first, second


def mixed_gateway(gateways: Gateways, ledger_path: Path) -> tuple[Gateway, Keys, dict[str, str]]:
    names = {
        "main": unique("nl-main"),
        "primary": unique("nl-primary"),
        "stall": unique("nl-stall"),
    }
    keys = Keys.make(TENANT, OTHER)
    config = proxy_config(
        [
            mock_upstream(names["main"]),
            mock_upstream(names["primary"]),
            mock_upstream(names["stall"], timeout_ms=STALL_TIMEOUT_MS),
        ],
        [
            model(STEADY, [names["main"]]),
            model(FAILOVER, [names["primary"]], fallback_models=[STEADY]),
            model(STALLING, [names["stall"]]),
        ],
        retry=RETRY,
        health=HEALTH,
        cache={"backend": "memory", "ttl_seconds": 600},
        keys=keys,
        ledger={"backend": "sqlite", "path": str(ledger_path)},
        prices={name: PRICE for name in (STEADY, FAILOVER, STALLING)},
    )
    return gateways.start(config, keys.env()), keys, names


# --------------------------------------------------------------------------- sending


def send(case: Case, sdks: dict[str, openai.OpenAI], http: dict[str, httpx.Client]) -> Seen:
    if case.kind == "client_cut":
        return cut_stream(case, http[case.tenant])
    if case.kind == "client_gone":
        return give_up(case, http[case.tenant])
    answer: Answer = ask(
        sdks[case.tenant],
        case.endpoint,
        case.model,
        case.text,
        stream=case.stream,
        headers=case.headers(),
    )
    return Seen(
        case,
        answer.status,
        answer.headers,
        text=answer.text,
        completed=answer.completed,
        error=answer.error,
    )


def cut_stream(case: Case, client: httpx.Client) -> Seen:
    """Read a slow stream until three words arrived, then hang up (close the connection)."""
    body = request_body(case.endpoint, case.model, case.text, stream=True)
    seen = ""
    with client.stream("POST", PATHS[case.endpoint], json=body, headers=case.headers()) as reply:
        status, headers = reply.status_code, reply.headers
        if status == 200:
            seen = read_until(reply, case.endpoint, lambda text: len(text.split()) >= 3)
    read = len(stream_text(case.endpoint, seen).split())
    return Seen(case, status, headers, words_read=read)


def give_up(case: Case, client: httpx.Client) -> Seen:
    """Send a request the upstream answers in 3 s, and give up on it before that (the request
    itself is sent in full: only the wait for the response head is short)."""
    body = request_body(case.endpoint, case.model, case.text, stream=case.stream)
    timeout = httpx.Timeout(10, read=GIVE_UP_AFTER)
    try:
        response = client.post(
            PATHS[case.endpoint], json=body, headers=case.headers(), timeout=timeout
        )
    except httpx.ReadTimeout:
        return Seen(case, 0, httpx.Headers())
    return Seen(case, response.status_code, response.headers)


# --------------------------------------------------------------------------- checking


def expected_cost(record: dict[str, Any]) -> float:
    return (
        record["prompt_tokens"] * PRICE["input"] + record["completion_tokens"] * PRICE["output"]
    ) / 1e6


def check_client_side(seen: Seen, names: dict[str, str]) -> None:
    """What each client saw is what its kind must produce."""
    case, kind = seen.case, seen.case.kind
    if kind == "client_gone":
        assert seen.status == 0, "the client was meant to give up before any answer"
        return
    http_status = 200 if kind in BROKEN_AFTER_HEAD else STATUS[kind]
    assert seen.status == http_status, (case.request_id, seen.status, seen.error)
    assert seen.headers.get("x-request-id") == case.request_id
    if kind in {"ok", "repeat", "fallback"}:
        assert seen.completed and seen.text == reply_to(case.text), case.request_id
    if kind in {"ok", "fallback"}:
        assert seen.headers.get("x-switchyard-cache") == "MISS", case.request_id
        assert seen.headers.get("x-switchyard-upstream") == names["main"]
    if kind == "repeat":
        assert (seen.headers.get("x-switchyard-cache"), seen.attempts) == ("HIT", 0)
    if kind == "fallback":
        # Two tries on the failing primary, then the fallback model's upstream.
        assert seen.attempts == 3, case.request_id
    if kind in {"failed", "timeout", "reset"}:
        assert seen.attempts == RETRY["attempts_per_upstream"], case.request_id
        assert seen.error is not None
    if kind == "timeout":
        assert seen.error is not None and seen.error.get("code") == "upstream_timeout"
    if kind == "rejected":
        assert seen.attempts == 1, "a 400 is not retried"
    if kind in {"stream_error", "upstream_cut"}:
        assert not seen.completed and seen.error is not None, case.request_id
    if kind == "client_cut":
        assert seen.words_read >= 3, case.request_id


def check_record(record: dict[str, Any], seen: Seen, originals: dict[str, dict[str, Any]]) -> None:
    """A record against what its client saw."""
    case, kind = seen.case, seen.case.kind
    where = case.request_id
    assert record["tenant"] == case.tenant, where
    assert record["status"] == STATUS[kind], (where, record)
    assert record["endpoint"] == PATHS[case.endpoint], where
    assert record["model"] == case.model, where
    assert record["stream"] is case.stream, where
    assert record["cached"] is (kind == "repeat"), where
    assert record["total_tokens"] == record["prompt_tokens"] + record["completion_tokens"]
    if seen.attempts is not None:
        assert record["attempts"] == seen.attempts, where
    if not case.stream:
        assert record["ttft_ms"] is None, where
    if kind == "client_gone":
        # Nothing was produced, but the upstream was sent the prompt, stream or not: its
        # estimate is charged.
        assert record["completion_tokens"] == 0, where
        assert record["prompt_tokens"] == words(case.text), where
        assert math.isclose(record["cost"], expected_cost(record), rel_tol=1e-9), where
        return
    if kind not in BILLABLE:
        assert (record["prompt_tokens"], record["completion_tokens"]) == (0, 0), where
        assert record["cost"] == 0, where
        return
    if kind == "repeat":
        original = originals[
            Case("ok", case.endpoint, case.stream, case.index, case.tenant, case.tag).request_id
        ]
        for name in TOTAL_FIELDS:
            assert record[name] == original[name], (where, name)
        assert record["cost"] == 0, where
        assert record["attempts"] == 0, where
        return
    assert record["prompt_tokens"] == words(case.text), where
    if kind == "client_cut":
        # The deltas forwarded: at least what the client read, fewer than the whole reply.
        assert seen.words_read <= record["completion_tokens"] < words(reply_to(case.text)), where
    else:
        assert record["completion_tokens"] == words(reply_to(case.text)), where
        if case.stream:
            assert record["ttft_ms"] is not None, where
    assert record["cost"] > 0, where
    assert math.isclose(record["cost"], expected_cost(record), rel_tol=1e-9), where


def assert_totals(usage: dict[str, Any], tenant: str) -> None:
    records, totals = usage["records"], usage["totals"]
    assert usage["tenant"] == tenant
    assert totals["requests"] == len(records)
    for name in TOTAL_FIELDS:
        assert totals[name] == sum(record[name] for record in records), name
    assert math.isclose(totals["cost"], math.fsum(r["cost"] for r in records), abs_tol=1e-9)


def sqlite_rows(path: Path) -> list[tuple[str, str, int, int, float]]:
    """(tenant, request_id, status, total_tokens, cost) of every row of the ledger file."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT tenant, request_id, status, total_tokens, cost FROM ledger"))


# --------------------------------------------------------------------------- the test


def test_a_mixed_fault_load_loses_and_doubles_no_record(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, tmp_path: Path
) -> None:
    ledger_path = tmp_path / "ledger.sqlite3"
    gateway, keys, names = mixed_gateway(gateways, ledger_path)
    # The failing primary: every request of this test that reaches it gets a 500.
    mock_control.add_fault(
        {"type": "status", "status": 500}, times=100_000, upstream=names["primary"], tag=tag
    )
    sdks = {tenant: gateway.sdk(key) for tenant, key in keys.tenants.items()}
    http = {tenant: gateway.http(key) for tenant, key in keys.tenants.items()}
    first, second = the_mix(tag)
    cases = first + second
    sent = {tenant: [c for c in cases if c.tenant == tenant] for tenant in keys.tenants}
    assert len({case.request_id for case in cases}) == len(cases)
    n = len(sent[TENANT])
    assert n >= 200, "the mix is meant to be a few hundred requests"

    try:
        seen = concurrently([lambda c=c: send(c, sdks, http) for c in first], WORKERS)
        seen += concurrently([lambda c=c: send(c, sdks, http) for c in second], WORKERS)
    finally:
        calls_to_primary = calls(mock_control, tag, names["primary"])
        mock_control.reset(upstream=names["primary"], tag=tag)

    for one in seen:
        check_client_side(one, names)
    fallbacks = sum(case.kind == "fallback" for case in cases)
    assert calls_to_primary == fallbacks * RETRY["attempts_per_upstream"]

    # Streams cut by their clients are recorded when the proxy notices: wait for all of them.
    def complete() -> dict[str, Any] | None:
        usage = records_of(gateway, keys.tenants[TENANT])
        return usage if usage["totals"]["requests"] >= n else None

    usage = wait_for(complete, what=f"{n} records for {TENANT}", timeout=20, interval=0.1)
    others = records_of(gateway, keys.tenants[OTHER])

    # Exactly one record per request: none lost, none doubled, none foreign.
    for tenant, got in ((TENANT, usage), (OTHER, others)):
        assert_totals(got, tenant)
        recorded = Counter(record["request_id"] for record in got["records"])
        doubled = {rid: times for rid, times in recorded.items() if times > 1}
        assert not doubled, f"doubled records: {doubled}"
        expected = {case.request_id for case in sent[tenant]}
        assert set(recorded) - expected == set(), "records of requests nobody sent"
        assert expected - set(recorded) == set(), "lost records"
    assert usage["totals"]["requests"] == n
    assert others["totals"]["requests"] == OTHER_TENANT_REQUESTS

    # Each record matches what its client saw.
    records = {r["request_id"]: r for r in usage["records"] + others["records"]}
    for one in seen:
        check_record(records[one.case.request_id], one, records)

    # The admin view: each tenant's totals, equal to its own records' sums.
    response = admin_usage(gateway, keys.admin)
    assert response.status_code == 200, response.text
    tenants = response.json()["tenants"]
    assert tenants[TENANT] == usage["totals"]
    assert tenants[OTHER] == others["totals"]

    # The durable store itself holds the same rows.
    rows = sqlite_rows(ledger_path)
    assert len(rows) == n + OTHER_TENANT_REQUESTS
    assert {(tenant, rid) for tenant, rid, *_ in rows} == {
        (r["tenant"], r["request_id"]) for r in records.values()
    }
    assert {rid: status for _, rid, status, *_ in rows} == {
        rid: r["status"] for rid, r in records.items()
    }

    # /stats and /metrics count exactly the requests the ledger holds.
    everything = list(records.values())
    statuses = Counter(r["status"] for r in everything)
    stats = gateway.stats()
    assert stats["requests"]["total"] == len(everything)
    assert stats["requests"]["success"] == sum(r["status"] < 400 for r in everything)
    assert stats["requests"]["errors"] == sum(r["status"] >= 400 for r in everything)
    assert stats["requests"]["streaming"] == sum(r["stream"] for r in everything)
    assert stats["requests"]["non_streaming"] == sum(not r["stream"] for r in everything)
    assert stats["requests"]["cached"] == sum(r["cached"] for r in everything)
    assert stats["cache"]["hits"] == sum(r["cached"] for r in everything)
    assert stats["errors_by_type"] == {
        str(status): count for status, count in statuses.items() if status >= 400
    }
    metrics = gateway.metrics()
    assert metrics.total("switchyard_requests_total") == len(everything)
    for status, count in statuses.items():
        assert metrics.total("switchyard_requests_total", status=str(status)) == count, status
    assert metrics.total("switchyard_cache_total", result="hit") == stats["cache"]["hits"]
    assert metrics.total("switchyard_in_flight_requests") == 0


def test_the_mix_covers_every_kind_on_both_endpoints_and_modes() -> None:
    """The plan itself: every kind is there, for each endpoint, in the modes it applies to."""
    first, second = the_mix("t")
    cases = first + second
    kinds = Counter((c.kind, c.endpoint, c.stream) for c in cases if c.tenant == TENANT)
    for endpoint in (CHAT, RESPONSES):
        for stream in MODES:
            for kind in EVERY_VARIANT:
                assert kinds[(kind, endpoint, stream)] > 0, (kind, endpoint, stream)
        for kind in STREAMS_ONLY:
            assert kinds[(kind, endpoint, True)] > 0
    # A repeat comes after the success it copies, in a later wave.
    firsts = {c.request_id for c in first}
    for case in second:
        if case.kind == "repeat":
            assert (
                Case("ok", case.endpoint, case.stream, case.index, case.tenant, case.tag).request_id
                in firsts
            )
