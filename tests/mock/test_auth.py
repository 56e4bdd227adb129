"""The upstream's key replaces the client's; without one, the client's is passed through."""

from __future__ import annotations

import httpx
import openai
import pytest

from harness.pytest.gateway import CLIENT_KEY, redacted, wait_for


@pytest.mark.slow
def test_upstream_key_replaces_the_clients(client: openai.OpenAI, seen, upstream_key: str) -> None:
    client.chat.completions.create(model="mock-chat", messages=[{"role": "user", "content": "x"}])
    headers = seen()[0]["headers"]
    assert headers["authorization"] == redacted(f"Bearer {upstream_key}")


@pytest.mark.slow
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
    def logged() -> str:
        text = stack.logs["proxy"].read_text()
        return text if "req-auth-log-1" in text else ""

    log = wait_for(logged, what="every request to be logged with its id", timeout=10)
    assert upstream_key not in log
    assert CLIENT_KEY not in log
