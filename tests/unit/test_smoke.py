"""The smoke check's own logic: its load plan, stream validation, cross-endpoint checks and
report."""

from __future__ import annotations

import json

from harness.checks.smoke import (
    Check,
    RequestResult,
    SmokeReport,
    check_load_counted,
    check_metrics,
    check_stats,
    check_status,
    plan,
    validate_stream,
)
from harness.checks.smoke_cli import request_line

STATS = {
    "requests": {"total": 10, "success": 9, "errors": 1, "streaming": 4, "non_streaming": 6},
    "latency_ms": {"avg": 1.5, "p50": 1.0, "p99": 9.0},
    "slo": {"target": 0.99, "success_rate": 0.9, "burn_status": "breach"},
}
METRICS = """# HELP switchyard_requests_total Requests.
# TYPE switchyard_requests_total counter
switchyard_requests_total{route="chat_completions",model="m",upstream="a",status="200"} 9
switchyard_requests_total{route="responses",model="m",upstream="a",status="502"} 1
"""


def failed(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if not check.ok]


def test_plan_covers_every_model_both_routes_and_both_modes() -> None:
    steps = plan(["a", "b", "c", "d"], 20)
    assert len(steps) == 20
    assert {model for _, model, _ in steps} == {"a", "b", "c", "d"}
    assert {(route, stream) for route, _, stream in steps} == {
        ("chat", False),
        ("chat", True),
        ("responses", False),
        ("responses", True),
    }


def test_chat_stream_must_end_with_done() -> None:
    chunk = 'data: {"choices": []}'
    assert validate_stream("chat", f"{chunk}\n\ndata: [DONE]\n\n") == (True, "")
    assert validate_stream("chat", f"{chunk}\n\n")[0] is False
    assert validate_stream("chat", "")[0] is False


def test_responses_stream_must_complete_with_numbered_events() -> None:
    def events(*types: str, numbers: list[int] | None = None) -> str:
        numbers = numbers if numbers is not None else list(range(len(types)))
        return "".join(
            f"event: {t}\ndata: {json.dumps({'type': t, 'sequence_number': n})}\n\n"
            for t, n in zip(types, numbers, strict=True)
        )

    good = events("response.created", "response.output_text.delta", "response.completed")
    assert validate_stream("responses", good) == (True, "")
    cut = events("response.created", "response.output_text.delta")
    assert "ended with" in validate_stream("responses", cut)[1]
    skipped = events("response.created", "response.completed", numbers=[0, 2])
    assert "sequence" in validate_stream("responses", skipped)[1]


def test_consistent_stats_pass() -> None:
    assert failed(check_stats(STATS)) == []


def test_inconsistent_stats_are_caught() -> None:
    broken = json.loads(json.dumps(STATS))
    broken["requests"]["streaming"] = 5
    broken["slo"]["success_rate"] = 0.5
    assert failed(check_stats(broken)) == [
        "stats: streaming + non_streaming == total",
        "stats: SLO success rate == success / total",
    ]
    assert failed(check_stats({})) == ["stats"]
    missing = {"requests": {"total": "ten"}}
    assert "stats.requests.total" in failed(check_stats(missing))


def test_metrics_must_parse_and_agree_with_stats() -> None:
    assert failed(check_metrics(METRICS, STATS)) == []
    more = METRICS.replace("} 9", "} 8")
    assert failed(check_metrics(more, STATS)) == ["metrics: requests_total == stats total"]
    assert failed(check_metrics('switchyard_requests_total{route="x} 1\n', STATS)) == [
        "metrics parse"
    ]


def test_every_request_sent_must_be_counted() -> None:
    before = {"requests": {"total": 3}}
    after = {"requests": {"total": 23}}
    assert failed(check_load_counted(before, after, 20)) == []
    assert failed(check_load_counted(before, after, 21)) == [
        "stats: every smoke request was counted"
    ]


def test_status_fields_and_types() -> None:
    good = {"version": "0.1.0", "uptime_seconds": 3, "upstreams": [], "models": []}
    assert failed(check_status(good)) == []
    assert failed(check_status({**good, "uptime_seconds": -1})) == ["status.uptime_seconds >= 0"]
    assert failed(check_status({**good, "version": 1})) == ["status.version"]


def test_report_verdict_rate_and_json() -> None:
    report = SmokeReport("http://x")
    report.requests.append(RequestResult(1, "chat", "m", False, True, 0.01))
    report.checks += [Check("a", True), Check("b", False, "why")]
    assert not report.passed
    assert report.pass_rate == 2 / 3
    data = json.loads(report.to_json())
    assert data["passed"] is False
    assert data["checks"][1] == {"name": "b", "ok": False, "detail": "why"}


def test_progress_line_format() -> None:
    line = request_line(RequestResult(7, "chat", "model-a", True, True, 0.031), 20)
    assert line.startswith("[ 7/20] STREAM  chat       model-a ... ")
    assert line.endswith("(0.031s)")
