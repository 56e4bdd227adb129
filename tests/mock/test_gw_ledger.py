"""The usage ledger (contract section 3, "Tenants, auth and the ledger"): one record per
authenticated model request, with tokens, cost and outcome, read back through /v1/usage.

Two tenants with keys handed over through the proxy's environment (`key_env`). Tokens are
checked against the mock's token rule and costs against the price table, from each record's
own tokens.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.pytest.gateway import (
    CHAT,
    EACH_ENDPOINT,
    EACH_MODE,
    ENDPOINTS,
    PATHS,
    RESPONSES,
    Gateway,
    Gateways,
    Keys,
    ask,
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

PRICED, FREE = "priced", "free"
# USD per million tokens; large enough that no rounding hides a wrong formula.
PRICE = {"input": 1500.0, "output": 4000.0}
RECORD_FIELDS = {
    "tenant",
    "request_id",
    "endpoint",
    "model",
    "upstream",
    "attempts",
    "stream",
    "cached",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "created_at",
}
TOTAL_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def ledger_gateway(
    gateways: Gateways, cache: dict[str, Any] | None = None, **retry: Any
) -> tuple[Gateway, Keys, str]:
    upstream = unique("ledger")
    keys = Keys.make("acme", "globex")
    config = proxy_config(
        [mock_upstream(upstream)],
        [model(PRICED, [upstream]), model(FREE, [upstream])],
        keys=keys,
        prices={PRICED: PRICE},
        cache=cache,
        retry=retry or None,
    )
    return gateways.start(config, keys.env()), keys, upstream


def expected_cost(record: dict[str, Any]) -> float:
    return (
        record["prompt_tokens"] * PRICE["input"] / 1e6
        + record["completion_tokens"] * PRICE["output"] / 1e6
    )


def assert_consistent(usage: dict[str, Any], tenant: str) -> None:
    """The invariants every ledger read must satisfy."""
    records, totals = usage["records"], usage["totals"]
    assert usage["tenant"] == tenant
    assert totals["requests"] == len(records)
    for name in TOTAL_FIELDS:
        assert totals[name] == sum(record[name] for record in records), name
    assert math.isclose(totals["cost"], math.fsum(r["cost"] for r in records), abs_tol=1e-9)
    for record in records:
        assert set(record) >= RECORD_FIELDS
        assert record["tenant"] == tenant
        assert record["total_tokens"] == record["prompt_tokens"] + record["completion_tokens"]
        if record["status"] >= 400 or record["cached"]:
            assert record["cost"] == 0
        if not record["stream"]:
            assert record["ttft_ms"] is None


def by_request_id(usage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {record["request_id"]: record for record in usage["records"]}


@EACH_ENDPOINT
@EACH_MODE
def test_a_successful_call_is_recorded_with_the_upstreams_tokens_and_its_cost(
    gateways: Gateways, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, keys, upstream = ledger_gateway(gateways)
    text = "count these five words"
    request_id = f"ok-{tag}"
    answer = ask(
        gateway.sdk(keys.tenants["acme"]),
        endpoint,
        PRICED,
        text,
        stream=stream,
        headers={"x-request-id": request_id},
    )
    assert answer.status == 200, answer.error

    usage = records_of(gateway, keys.tenants["acme"])
    assert_consistent(usage, "acme")
    [record] = usage["records"]
    assert record["request_id"] == request_id
    assert endpoint in record["endpoint"]
    assert (record["model"], record["upstream"], record["attempts"]) == (PRICED, upstream, 1)
    assert (record["stream"], record["cached"], record["status"]) == (stream, False, 200)
    # The mock's token rule: words in, words of the reply out.
    assert record["prompt_tokens"] == words(text)
    assert record["completion_tokens"] == words(reply_to(text))
    assert record["cost"] > 0
    assert math.isclose(record["cost"], expected_cost(record), rel_tol=1e-9)
    assert record["latency_ms"] >= 0
    if stream:
        assert record["ttft_ms"] is not None and 0 <= record["ttft_ms"] <= record["latency_ms"]


@EACH_ENDPOINT
def test_a_stream_is_costed_without_showing_usage_the_client_did_not_ask_for(
    gateways: Gateways, tag: str, endpoint: str
) -> None:
    gateway, keys, _ = ledger_gateway(gateways)
    text = "stream and still pay"
    answer = ask(gateway.sdk(keys.tenants["acme"]), endpoint, PRICED, text, stream=True)
    assert answer.status == 200 and answer.completed
    if endpoint == CHAT:
        # The proxy asks the upstream for a usage chunk, for the ledger; this client did not.
        assert answer.usage is None
        assert all(chunk.choices for chunk in answer.events), "no usage-only chunk"

    [record] = records_of(gateway, keys.tenants["acme"])["records"]
    assert record["prompt_tokens"] == words(text)
    assert record["completion_tokens"] == words(reply_to(text))
    assert record["cost"] > 0


@EACH_ENDPOINT
@EACH_MODE
def test_a_failed_call_costs_nothing(
    gateways: Gateways, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, keys, _ = ledger_gateway(gateways, max_attempts=1)
    answer = ask(
        gateway.sdk(keys.tenants["acme"]),
        endpoint,
        PRICED,
        "this will fail",
        stream=stream,
        headers={"x-mock-fault": "type=status;status=500", "x-request-id": f"fail-{tag}"},
    )
    assert answer.status == 500

    usage = records_of(gateway, keys.tenants["acme"])
    assert_consistent(usage, "acme")
    record = by_request_id(usage)[f"fail-{tag}"]
    assert record["status"] == 500
    assert record["attempts"] == 1
    assert (record["prompt_tokens"], record["completion_tokens"], record["cost"]) == (0, 0, 0)


@EACH_ENDPOINT
@EACH_MODE
def test_a_cache_hit_costs_nothing_and_keeps_the_original_tokens(
    gateways: Gateways, tag: str, endpoint: str, stream: bool
) -> None:
    gateway, keys, _ = ledger_gateway(gateways, cache={"backend": "memory"})
    sdk = gateway.sdk(keys.tenants["acme"])
    text = f"ask twice {tag}"
    first = ask(sdk, endpoint, PRICED, text, stream=stream, headers={"x-request-id": f"a-{tag}"})
    hit = ask(sdk, endpoint, PRICED, text, stream=stream, headers={"x-request-id": f"b-{tag}"})
    assert (first.cache, hit.cache) == ("MISS", "HIT")

    usage = records_of(gateway, keys.tenants["acme"])
    assert_consistent(usage, "acme")
    records = by_request_id(usage)
    original, cached = records[f"a-{tag}"], records[f"b-{tag}"]
    assert (original["cached"], cached["cached"]) == (False, True)
    assert original["cost"] > 0
    assert cached["cost"] == 0
    for name in TOTAL_FIELDS:
        assert cached[name] == original[name], name
    assert cached["attempts"] == hit.attempts == 0


@pytest.mark.slow
def test_concurrent_requests_make_exactly_one_record_each(gateways: Gateways, tag: str) -> None:
    gateway, keys, _ = ledger_gateway(gateways)
    sdk = gateway.sdk(keys.tenants["acme"])
    count = 40

    def one(index: int) -> str:
        endpoint, stream = ENDPOINTS[index % 2], index % 4 >= 2
        request_id = f"c-{index}-{tag}"
        answer = ask(
            sdk,
            endpoint,
            PRICED,
            f"concurrent request {index}",
            stream=stream,
            headers={"x-request-id": request_id},
        )
        assert answer.status == 200, answer.error
        return request_id

    sent = concurrently([lambda index=index: one(index) for index in range(count)], workers=10)

    usage = records_of(gateway, keys.tenants["acme"])
    assert_consistent(usage, "acme")
    recorded = [record["request_id"] for record in usage["records"]]
    assert len(recorded) == count, "none lost, none doubled"
    assert sorted(recorded) == sorted(sent)
    streams = [record for record in usage["records"] if record["stream"]]
    assert len(streams) == count // 2


@EACH_ENDPOINT
@pytest.mark.slow
def test_a_stream_cut_by_the_client_is_recorded_as_499_with_what_was_produced(
    gateways: Gateways, tag: str, endpoint: str
) -> None:
    gateway, keys, _ = ledger_gateway(gateways)
    text = " ".join(f"word{index}" for index in range(30))
    request_id = f"cut-{tag}"
    body = request_body(endpoint, PRICED, text, stream=True)
    headers = {
        "x-request-id": request_id,
        # 200 ms between events: the whole reply would take over 6 s.
        "x-mock-fault": "type=latency;between_chunks_ms=200",
    }
    client = gateway.http(keys.tenants["acme"])
    with client.stream("POST", PATHS[endpoint], json=body, headers=headers) as response:
        assert response.status_code == 200
        # Hang up once three words arrived.
        seen = read_until(response, endpoint, lambda text: len(text.split()) >= 3)
    read_words = len(stream_text(endpoint, seen).split())

    record = wait_for(
        lambda: by_request_id(records_of(gateway, keys.tenants["acme"])).get(request_id),
        what="the cut stream's record",
    )
    assert record["status"] == 499
    assert record["stream"] is True
    # Deltas forwarded: at least what this client read, far fewer than the whole reply.
    assert read_words <= record["completion_tokens"] < words(reply_to(text))
    assert record["prompt_tokens"] == words(text)
    assert record["total_tokens"] == record["prompt_tokens"] + record["completion_tokens"]
    assert math.isclose(record["cost"], expected_cost(record), rel_tol=1e-9)


@EACH_ENDPOINT
def test_cost_follows_the_price_table_and_unpriced_models_are_free(
    gateways: Gateways, tag: str, endpoint: str
) -> None:
    gateway, keys, _ = ledger_gateway(gateways)
    sdk = gateway.sdk(keys.tenants["globex"])
    ask(sdk, endpoint, PRICED, "priced words here", headers={"x-request-id": f"p-{tag}"})
    ask(sdk, endpoint, FREE, "free words here", headers={"x-request-id": f"f-{tag}"})

    usage = records_of(gateway, keys.tenants["globex"])
    assert_consistent(usage, "globex")
    records = by_request_id(usage)
    priced, free = records[f"p-{tag}"], records[f"f-{tag}"]
    assert priced["prompt_tokens"] > 0 and priced["completion_tokens"] > 0
    assert math.isclose(priced["cost"], expected_cost(priced), rel_tol=1e-9)
    assert free["total_tokens"] > 0
    assert free["cost"] == 0


@pytest.mark.slow
def test_each_tenants_totals_are_the_sum_of_its_own_records(gateways: Gateways, tag: str) -> None:
    gateway, keys, _ = ledger_gateway(gateways, max_attempts=1)
    plan = {"acme": 5, "globex": 3}
    for tenant, count in plan.items():
        sdk = gateway.sdk(keys.tenants[tenant])
        for index in range(count):
            endpoint = ENDPOINTS[index % 2]
            failing = {"x-mock-fault": "type=status;status=503"} if index == 0 else None
            ask(sdk, endpoint, PRICED, f"{tenant} asks {index}", stream=index == 2, headers=failing)

    for tenant, count in plan.items():
        usage = records_of(gateway, keys.tenants[tenant])
        assert_consistent(usage, tenant)
        assert usage["totals"]["requests"] == count
        assert sum(record["status"] == 503 for record in usage["records"]) == 1


def test_usage_is_newest_first_and_limit_bounds_the_records(gateways: Gateways, tag: str) -> None:
    gateway, keys, _ = ledger_gateway(gateways)
    sdk = gateway.sdk(keys.tenants["acme"])
    sent = [f"n{index}-{tag}" for index in range(4)]
    for index, request_id in enumerate(sent):
        ask(sdk, RESPONSES, PRICED, f"in order {index}", headers={"x-request-id": request_id})

    everything = records_of(gateway, keys.tenants["acme"])
    assert [record["request_id"] for record in everything["records"]] == sent[::-1]
    response = gateway.http(keys.tenants["acme"]).get("/v1/usage", params={"limit": 2})
    assert response.status_code == 200
    assert [record["request_id"] for record in response.json()["records"]] == sent[:1:-1]


@pytest.mark.slow
def test_the_sqlite_ledger_survives_a_restart(gateways: Gateways, tag: str) -> None:
    gateway, keys, _ = ledger_gateway(gateways)
    request_id = f"durable-{tag}"
    answer = ask(
        gateway.sdk(keys.tenants["acme"]),
        CHAT,
        PRICED,
        "remember me",
        headers={"x-request-id": request_id},
    )
    assert answer.status == 200
    before = records_of(gateway, keys.tenants["acme"])

    gateway.restart_proxy()

    after = records_of(gateway, keys.tenants["acme"])
    assert after["totals"] == before["totals"]
    assert request_id in by_request_id(after)
