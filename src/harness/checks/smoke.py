"""The smoke check of a running stack: wait for health, send a mixed load, then check that
/status, /stats, /metrics and /v1/usage are well-formed and agree with each other.

`scripts/smoke.py` and `invoke smoke` are thin front ends to `run_smoke`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.runtime.poll import WaitTimeout, wait_until
from harness.sse import sse_events

ROUTES = ("chat", "responses")


@dataclass
class Check:
    """One named verdict, with what was seen when it failed."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class RequestResult:
    index: int
    route: str
    model: str
    stream: bool
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class SmokeReport:
    base_url: str
    requests: list[RequestResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.requests) and all(c.ok for c in self.checks)

    @property
    def pass_rate(self) -> float:
        verdicts = [r.ok for r in self.requests] + [c.ok for c in self.checks]
        return sum(verdicts) / len(verdicts) if verdicts else 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "base_url": self.base_url,
                "passed": self.passed,
                "pass_rate": self.pass_rate,
                "seconds": round(self.seconds, 3),
                "requests": [asdict(r) for r in self.requests],
                "checks": [asdict(c) for c in self.checks],
            },
            indent=2,
        )


@dataclass
class SmokeOptions:
    base_url: str
    requests: int = 20
    timeout: float = 30.0
    api_key: str = "sk-smoke"
    admin_key: str | None = None
    models: list[str] | None = None


# --------------------------------------------------------------------------- the run


def run_smoke(
    options: SmokeOptions,
    on_request: Callable[[RequestResult, int], None] = lambda result, total: None,
) -> SmokeReport:
    report = SmokeReport(options.base_url)
    started = time.monotonic()
    headers = {"authorization": f"Bearer {options.api_key}"}
    with httpx.Client(base_url=options.base_url, timeout=options.timeout, headers=headers) as http:
        ready = wait_ready(http, options.timeout)
        report.checks.append(ready)
        if ready.ok:
            status = http.get("/status").json()
            report.checks += check_status(status)
            models = options.models or [m["id"] for m in http.get("/v1/models").json()["data"]]
            before = _stats(http)
            for result in send_load(http, models, options.requests):
                report.requests.append(result)
                on_request(result, options.requests)
            after = _stats(http)
            metrics_text = http.get("/metrics").text
            report.checks += check_stats(after)
            report.checks += check_metrics(metrics_text, after)
            report.checks += check_load_counted(before, after, len(report.requests))
            if options.admin_key:
                usage = http.get(
                    "/admin/usage", headers={"authorization": f"Bearer {options.admin_key}"}
                )
                report.checks += check_usage(usage.json() if usage.is_success else None, after)
    report.seconds = time.monotonic() - started
    return report


def wait_ready(http: httpx.Client, timeout: float) -> Check:
    """Poll /health until it answers 200, for at most `timeout` seconds."""
    last = ["no answer"]

    def healthy() -> bool:
        try:
            response = http.get("/health", timeout=1.0)
            if response.status_code == 200:
                return True
            last[0] = f"status {response.status_code}"
        except httpx.HTTPError as exc:
            last[0] = f"{exc.__class__.__name__}: {exc}"
        return False

    try:
        wait_until(healthy, what="/health", timeout=timeout)
    except WaitTimeout:
        return Check("health", False, f"not healthy within {timeout:g}s ({last[0]})")
    return Check("health", True)


def plan(models: list[str], count: int) -> list[tuple[str, str, bool]]:
    """(route, model, stream) for each request: every model, both routes, both modes."""
    return [(ROUTES[(i // 2) % 2], models[i % len(models)], i % 2 == 1) for i in range(count)]


def send_load(http: httpx.Client, models: list[str], count: int) -> Iterable[RequestResult]:
    for index, (route, model, stream) in enumerate(plan(models, count), start=1):
        started = time.monotonic()
        ok, detail = _one_request(http, route, model, stream, index)
        yield RequestResult(index, route, model, stream, ok, time.monotonic() - started, detail)


def _one_request(
    http: httpx.Client, route: str, model: str, stream: bool, index: int
) -> tuple[bool, str]:
    text = f"smoke request number {index}"
    body: dict[str, Any] = {"model": model, "stream": stream}
    if route == "chat":
        path = "/v1/chat/completions"
        body["messages"] = [{"role": "user", "content": text}]
    else:
        path = "/v1/responses"
        body["input"] = text
    try:
        if not stream:
            response = http.post(path, json=body)
            if response.status_code != 200:
                return False, f"status {response.status_code}: {response.text[:200]}"
            return _validate_body(route, response.json())
        with http.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                return False, f"status {response.status_code}: {response.read()[:200]!r}"
            return validate_stream(route, response.read().decode())
    except (httpx.HTTPError, ValueError) as exc:
        return False, f"{exc.__class__.__name__}: {exc}"


def _validate_body(route: str, body: dict[str, Any]) -> tuple[bool, str]:
    if route == "chat":
        content = body.get("choices", [{}])[0].get("message", {}).get("content")
        return (bool(content), "" if content else "no message content")
    texts = [
        part.get("text", "")
        for item in body.get("output", [])
        for part in item.get("content", [])
        if part.get("type") == "output_text"
    ]
    return (bool("".join(texts)), "" if texts else "no output_text")


def validate_stream(route: str, raw: str) -> tuple[bool, str]:
    """A complete SSE stream: chat ends with [DONE]; responses ends with response.completed."""
    data = [payload for _, payload in sse_events(raw)]
    if not data:
        return False, "empty stream"
    if route == "chat":
        if data[-1] != "[DONE]":
            return False, "chat stream did not end with [DONE]"
        return True, ""
    last = json.loads(data[-1])
    if last.get("type") != "response.completed":
        return False, f"responses stream ended with {last.get('type')!r}"
    numbers = [json.loads(d).get("sequence_number") for d in data]
    if numbers != list(range(len(numbers))):
        return False, "sequence numbers are not 0, 1, 2, ..."
    return True, ""


# --------------------------------------------------------------------------- the checks


def _stats(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/stats")
    return dict(response.json()) if response.status_code == 200 else {}


def _typed(name: str, value: Any, kind: type | tuple[type, ...]) -> Check:
    ok = isinstance(value, kind) and not isinstance(value, bool)
    return Check(name, ok, "" if ok else f"expected {kind}, got {value!r}")


def check_status(status: dict[str, Any]) -> list[Check]:
    checks = [
        _typed("status.version", status.get("version"), str),
        _typed("status.uptime_seconds", status.get("uptime_seconds"), (int, float)),
        _typed("status.upstreams", status.get("upstreams"), list),
        _typed("status.models", status.get("models"), list),
    ]
    if isinstance(status.get("uptime_seconds"), (int, float)):
        checks.append(Check("status.uptime_seconds >= 0", status["uptime_seconds"] >= 0))
    return checks


def check_stats(stats: dict[str, Any]) -> list[Check]:
    if not stats:
        return [Check("stats", False, "/stats did not answer 200 with JSON")]
    requests = stats.get("requests", {})
    checks = [
        _typed(f"stats.requests.{key}", requests.get(key), int)
        for key in ("total", "success", "errors", "streaming", "non_streaming")
    ]
    if not all(c.ok for c in checks):
        return checks
    total = requests["total"]
    checks += [
        _equal(
            "stats: streaming + non_streaming == total",
            requests["streaming"] + requests["non_streaming"],
            total,
        ),
        _equal("stats: success + errors == total", requests["success"] + requests["errors"], total),
    ]
    latency = stats.get("latency_ms", {})
    for key in ("avg", "p50", "p99"):
        value = latency.get(key)
        checks.append(
            Check(
                f"stats.latency_ms.{key} >= 0",
                isinstance(value, (int, float)) and value >= 0,
                repr(value),
            )
        )
    slo = stats.get("slo", {})
    rate = slo.get("success_rate")
    in_range = isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0
    checks.append(Check("stats.slo.success_rate in [0, 1]", in_range, repr(rate)))
    if in_range and total:
        checks.append(
            _close("stats: SLO success rate == success / total", rate, requests["success"] / total)
        )
    checks.append(
        Check(
            "stats.slo.burn_status",
            slo.get("burn_status") in {"ok", "warning", "breach"},
            repr(slo.get("burn_status")),
        )
    )
    return checks


def check_metrics(text: str, stats: dict[str, Any]) -> list[Check]:
    try:
        families = {family.name: family for family in text_string_to_metric_families(text)}
    except ValueError as exc:
        return [Check("metrics parse", False, str(exc))]
    checks = [Check("metrics parse", True)]
    requests = families.get("switchyard_requests")
    if requests is None:
        return [*checks, Check("metrics: switchyard_requests_total present", False)]
    counted = sum(s.value for s in requests.samples if s.name == "switchyard_requests_total")
    total = stats.get("requests", {}).get("total")
    checks.append(_equal("metrics: requests_total == stats total", int(counted), total))
    return checks


def check_load_counted(before: dict[str, Any], after: dict[str, Any], sent: int) -> list[Check]:
    if not before or not after:
        return []
    grew = after["requests"]["total"] - before["requests"]["total"]
    return [_equal("stats: every smoke request was counted", grew, sent)]


def check_usage(usage: dict[str, Any] | None, stats: dict[str, Any]) -> list[Check]:
    if usage is None:
        return [Check("usage", False, "/admin/usage did not answer 200")]
    recorded = sum(totals.get("requests", 0) for totals in usage.get("tenants", {}).values())
    return [_equal("usage: ledger records == stats total", recorded, stats["requests"]["total"])]


def _equal(name: str, got: Any, expected: Any) -> Check:
    return Check(name, got == expected, "" if got == expected else f"{got!r} != {expected!r}")


def _close(name: str, got: float, expected: float) -> Check:
    ok = abs(got - expected) < 1e-6
    return Check(name, ok, "" if ok else f"{got!r} != {expected!r}")
