"""The upstream's key replaces the client's; without one, the client's is passed through."""

from __future__ import annotations

import time

import httpx
import openai

from tests.mock.helpers import CLIENT_KEY, redacted


def test_upstream_key_replaces_the_clients(client: openai.OpenAI, seen, upstream_key: str) -> None:
    client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}])
    headers = seen()[0]["headers"]
    assert headers["authorization"] == redacted(f"Bearer {upstream_key}")


def test_clients_key_is_passed_through_without_an_upstream_key(client: openai.OpenAI, seen) -> None:
    client.responses.create(model="mock-responses", input="x")
    assert seen()[0]["headers"]["authorization"] == redacted(f"Bearer {CLIENT_KEY}")


def test_requests_are_logged_without_keys(http: httpx.Client, stack, upstream_key: str) -> None:
    body = {"model": "mock-chat", "messages": [{"role": "user", "content": "x"}]}
    response = http.post(
        "/v1/chat/completions", json=body, headers={"x-request-id": "req-auth-log-1"}
    )
    assert response.status_code == 200
    # Log lines are written off the request path: give the writer a moment.
    deadline = time.monotonic() + 10
    log = stack.logs["proxy"].read_text()
    while "req-auth-log-1" not in log and time.monotonic() < deadline:
        time.sleep(0.02)
        log = stack.logs["proxy"].read_text()
    assert "req-auth-log-1" in log, "every request is logged with its id"
    assert upstream_key not in log
    assert CLIENT_KEY not in log
