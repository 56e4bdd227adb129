"""SIGTERM drains: an open stream finishes, then the proxy exits 0."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.runtime.process import Service


@pytest.fixture
def private_proxy(stack: testing.StackHandle) -> Iterator[Service]:
    if stack.stack is None:
        pytest.skip("needs a stack started by the harness")
    private, proxy = testing.start_private_proxy(stack, "drain")
    yield proxy
    private.down()


def delta_text(line: str) -> str:
    if not line.startswith("data: {"):
        return ""
    return "".join(c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"])


@pytest.mark.robustness
def test_sigterm_lets_an_open_stream_finish(private_proxy: Service, tag: str) -> None:
    words = "slow words keep coming one by one"
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": words}], "stream": True}
    headers = {"x-mock-tag": tag, "x-mock-fault": "type=latency;between_chunks_ms=100"}
    lines: list[str] = []
    signalled = False
    with (
        httpx.Client(base_url=private_proxy.url, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if not signalled and delta_text(line):
                private_proxy.send_signal(signal.SIGTERM)
                signalled = True
    assert signalled
    assert [line for line in lines if line][-1] == "data: [DONE]", "the stream ran to its end"
    assert "".join(delta_text(line) for line in lines) == f"reply 1: {words}"
    assert private_proxy.wait_exit(timeout=15) == 0
