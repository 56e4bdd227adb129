"""/metrics and /stats (contract section 3, "Metrics and stats"): the Prometheus exposition parses
as Prometheus would parse it, and after a mixed load /metrics, /stats and the ledger count the
same set of requests."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    PATHS,
    RESPONSES,
    Gateway,
    Gateways,
    Keys,
    admin_usage,
    ask,
    mock_upstream,
    model,
    proxy_config,
    request_body,
    stream_text,
    unique,
    wait_for,
)

SLO_TARGET = 0.9


def metrics_gateway(gateways: Gateways) -> tuple[Gateway, Keys, str]:
    upstream = unique("metrics")
    keys = Keys.make("acme")
    config = proxy_config(
        [mock_upstream(upstream)],
        [model("m", [upstream])],
        cache={"backend": "memory"},
        retry={"max_attempts": 1},
        keys=keys,
        slo={"success_target": SLO_TARGET},
    )
    return gateways.start(config, keys.env()), keys, upstream


def stats_when(gateway: Gateway, total: int) -> dict[str, Any]:
    """/stats once it has counted `total` requests (a stream is counted when it ends)."""
    return wait_for(
        lambda: (stats := gateway.stats())["requests"]["total"] == total and stats,
        what=f"/stats to count {total} requests",
    )


def test_metrics_parse_as_prometheus_text(gateways: Gateways) -> None:
    gateway, keys, upstream = metrics_gateway(gateways)
    ask(gateway.sdk(keys.tenants["acme"]), CHAT, "m", "one request")
    metrics = gateway.metrics()  # text_string_to_metric_families raises on malformed text
    for name in (
        "switchyard_requests_total",
        "switchyard_cache_total",
        "switchyard_cache_errors_total",
        "switchyard_auth_failures_total",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_request_duration_seconds_count",
        "switchyard_overhead_seconds_count",
        "switchyard_in_flight_requests",
        "switchyard_upstream_healthy",
    ):
        assert metrics.has(name), f"{name} missing from /metrics"
    [sample] = metrics.select("switchyard_requests_total")
    assert set(sample.labels) >= {"route", "model", "upstream", "status"}
    assert (sample.labels["model"], sample.labels["upstream"]) == ("m", upstream)
    assert sample.labels["status"] == "200"


@pytest.mark.slow
def test_metrics_stats_and_ledger_agree_after_a_mixed_load(gateways: Gateways, tag: str) -> None:
    gateway, keys, _ = metrics_gateway(gateways)
    sdk = gateway.sdk(keys.tenants["acme"])
    answers = [
        ask(sdk, CHAT, "m", f"alpha {tag}"),
        ask(sdk, CHAT, "m", f"beta {tag}", stream=True),
        ask(sdk, RESPONSES, "m", f"gamma {tag}"),
        ask(sdk, RESPONSES, "m", f"delta {tag}", stream=True),
        ask(sdk, CHAT, "m", f"alpha {tag}"),  # the cache hit
    ]
    assert [answer.status for answer in answers] == [200] * 5
    assert answers[-1].cache == "HIT"

    healthy = stats_when(gateway, 5)
    assert healthy["slo"]["success_rate"] == 1.0
    assert healthy["slo"]["burn_status"] == "ok"
    assert healthy["slo"]["error_budget_remaining"] > 0

    failing = {"x-mock-fault": "type=status;status=500"}
    assert ask(sdk, CHAT, "m", f"epsilon {tag}", headers=failing).status == 500
    # Refused before it counts as a request: only the auth failure counter sees it.
    assert ask(gateway.sdk("sk-not-a-key"), CHAT, "m", "who am i").status == 401

    stats = stats_when(gateway, 6)
    metrics = gateway.metrics()
    requests = stats["requests"]
    assert metrics.total("switchyard_requests_total") == requests["total"] == 6
    tenants = admin_usage(gateway, keys.admin).json()["tenants"]
    assert sum(totals["requests"] for totals in tenants.values()) == 6
    assert requests["streaming"] + requests["non_streaming"] == requests["total"]
    assert (requests["streaming"], requests["non_streaming"]) == (2, 4)
    assert requests["success"] + requests["errors"] == requests["total"]
    assert (requests["success"], requests["errors"], requests["cached"]) == (5, 1, 1)
    assert stats["errors_by_type"] == {"500": 1}

    assert metrics.total("switchyard_requests_total", status="500") == 1
    assert metrics.total("switchyard_requests_total", status="200") == 5
    by_route: dict[str, float] = {}
    for sample in metrics.select("switchyard_requests_total"):
        by_route[sample.labels["route"]] = by_route.get(sample.labels["route"], 0) + sample.value
    assert sorted(by_route.values()) == [2, 4], by_route
    assert metrics.total("switchyard_auth_failures_total") == 1

    assert stats["cache"]["hits"] == 1
    for result, key in (("hit", "hits"), ("miss", "misses"), ("bypass", "bypasses")):
        assert metrics.total("switchyard_cache_total", result=result) == stats["cache"][key]

    assert metrics.total("switchyard_request_duration_seconds_count") == 6
    assert stats["streaming"]["count"] == 2
    assert metrics.total("switchyard_ttft_seconds_count") == 2
    overhead = metrics.total("switchyard_overhead_seconds_sum")
    assert 0 <= overhead <= metrics.total("switchyard_request_duration_seconds_sum")

    latency = stats["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p99"]
    assert latency["avg"] > 0
    assert stats["requests_per_second"] > 0

    slo = stats["slo"]
    assert slo["target"] == SLO_TARGET
    assert math.isclose(slo["success_rate"], 5 / 6, rel_tol=1e-6)
    # One error in six overspends the 10% budget the target allows. (How far overspent makes a
    # "warning" rather than a "breach" is the proxy's policy; "ok" it is not.)
    assert slo["error_budget_remaining"] < 0
    assert slo["burn_status"] in {"warning", "breach"}


@pytest.mark.slow
def test_in_flight_gauge_counts_an_open_stream(gateways: Gateways, tag: str) -> None:
    gateway, keys, _ = metrics_gateway(gateways)
    body = request_body(CHAT, "m", " ".join(f"w{index}" for index in range(8)), stream=True)
    slow = {"x-mock-fault": "type=latency;between_chunks_ms=100"}
    in_flight = "switchyard_in_flight_requests"
    http = gateway.http(keys.tenants["acme"])
    with http.stream("POST", PATHS[CHAT], json=body, headers=slow) as response:
        seen, checked = "", False
        for line in response.iter_lines():
            seen += line + "\n\n"
            # Checked inside the loop: leaving it drops the line iterator, which closes the
            # connection, and the stream would no longer be open.
            if not checked and stream_text(CHAT, seen):
                assert gateway.metrics().total(in_flight) == 1
                checked = True
        assert checked
    wait_for(lambda: gateway.metrics().total(in_flight) == 0, what="the stream to end")


def test_retries_and_fallbacks_are_counted(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    own, spare = unique("rf-own"), unique("rf-spare")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(own), mock_upstream(spare)],
            [model("primary", [own], fallback_models=["backup"]), model("backup", [spare])],
            retry={"max_attempts": 3, "attempts_per_upstream": 2, "base_backoff_ms": 1},
        )
    )
    mock_control.add_fault({"type": "status", "status": 500}, times=2, upstream=own, tag=tag)

    answer = ask(gateway.sdk(), CHAT, "primary", "second time lucky")

    assert (answer.status, answer.upstream, answer.attempts) == (200, spare, 3)
    metrics = gateway.metrics()
    assert metrics.total("switchyard_retries_total") >= 1
    assert metrics.total("switchyard_fallbacks_total") >= 1
    # Three attempts, one request.
    assert metrics.total("switchyard_requests_total") == 1


@pytest.mark.slow
def test_the_upstream_health_gauge_follows_ejection(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    flaky, steady = unique("hg-flaky"), unique("hg-steady")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(flaky), mock_upstream(steady)],
            [model("m", [flaky, steady], strategy="least_in_flight")],
            health={"failure_threshold": 1, "cooldown_ms": 60000},
        )
    )
    healthy = "switchyard_upstream_healthy"
    assert gateway.metrics().total(healthy, upstream=flaky) == 1
    mock_control.add_fault({"type": "status", "status": 503}, times=1, upstream=flaky, tag=tag)

    assert ask(gateway.sdk(), CHAT, "m", "fail over").upstream == steady

    metrics = gateway.metrics()
    assert metrics.total(healthy, upstream=flaky) == 0
    assert metrics.total(healthy, upstream=steady) == 1
