"""scripts/smoke.py against a real proxy: exit code 0 and a JSON report that says why."""

from __future__ import annotations

import json
import sys

import pytest

from harness.pytest import stacks as testing
from harness.runtime import paths
from harness.runtime.process import pick_free_port, run


def smoke(*args: str) -> tuple[int, str]:
    lines: list[str] = []
    code = run(
        [sys.executable, str(paths.root() / "scripts" / "smoke.py"), *args],
        env={"NO_COLOR": "1"},
        on_output=lines.append,
    )
    return code, "\n".join(lines)


def json_part(output: str) -> dict:
    """The JSON report: stdout carries it whole; the progress lines go to stderr."""
    return dict(json.loads(output[output.index("{\n") :]))


@pytest.mark.slow
def test_smoke_passes_against_a_healthy_proxy(stack) -> None:
    # A proxy of its own: /stats must count exactly the smoke's requests.
    private = testing.private_stack(stack, "smoke")
    try:
        port = private.services()[private.config.proxy].port
        code, output = smoke("--host", "127.0.0.1", "--port", str(port), "--json")
    finally:
        private.down()
    report = json_part(output)
    assert code == 0, output
    assert report["passed"] is True
    assert report["pass_rate"] == 1.0
    assert len(report["requests"]) == 20
    assert {r["route"] for r in report["requests"]} == {"chat", "responses"}
    assert {r["stream"] for r in report["requests"]} == {True, False}
    assert len({r["model"] for r in report["requests"]}) >= 4
    names = {c["name"] for c in report["checks"]}
    assert "metrics: requests_total == stats total" in names
    assert "stats: every smoke request was counted" in names


@pytest.mark.slow
def test_smoke_fails_with_exit_1_when_nothing_answers() -> None:
    unused = str(pick_free_port())
    code, output = smoke("--port", unused, "--timeout", "0.5", "--json")
    assert code == 1
    report = json_part(output)
    assert report["passed"] is False
    assert report["checks"][0]["name"] == "health" and not report["checks"][0]["ok"]
