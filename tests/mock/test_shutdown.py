"""SIGTERM drains: an open stream finishes, then the proxy exits 0."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.pytest.calls import CHAT, stream_text
from harness.runtime.process import Service
from harness.sse import sse_events


@pytest.fixture
def private_proxy(stack: testing.StackHandle) -> Iterator[Service]:
    if stack.stack is None:
        pytest.skip("needs a stack started by the harness")
    private, proxy = testing.start_private_proxy(stack, "drain")
    yield proxy
    private.down()


@pytest.mark.robustness
@pytest.mark.slow
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
            if not signalled and stream_text(CHAT, "\n".join(lines)):
                private_proxy.send_signal(signal.SIGTERM)
                signalled = True
    raw = "\n".join(lines)
    assert signalled
    assert sse_events(raw)[-1] == (None, "[DONE]"), "the stream ran to its end"
    assert stream_text(CHAT, raw) == f"reply 1: {words}"
    assert private_proxy.wait_exit(timeout=15) == 0
