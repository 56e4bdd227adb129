"""Client headers reach the upstream by an allowlist: the client's account headers (cookie,
OpenAI organisation and project) only when its own key goes with them, the mock's x-mock-*
controls always, anything else not at all."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

ACCOUNT = {"cookie": "session=1", "openai-organization": "org-1", "openai-project": "proj-1"}
OTHER = {"x-custom": "1", "referer": "http://example.invalid/"}
ALWAYS = {"x-mock-note": "kept", "openai-beta": "assistants=v2", "user-agent": "bounds-test"}

# (endpoint, its body, whether the shared config gives that model's upstream a key of its own)
CASES = [
    (
        "/v1/chat/completions",
        {"model": "mock-chat", "messages": [{"role": "user", "content": "x"}]},
        True,
    ),
    ("/v1/responses", {"model": "mock-responses", "input": "x"}, False),
]


@pytest.mark.parametrize(("path", "body", "upstream_has_key"), CASES)
def test_client_headers_cross_by_the_allowlist(
    http: httpx.Client, seen: Any, path: str, body: dict[str, Any], upstream_has_key: bool
) -> None:
    response = http.post(path, json=body, headers={**ACCOUNT, **OTHER, **ALWAYS})
    assert response.status_code == 200, response.text
    [received] = seen()
    headers = received["headers"]
    for name, value in ALWAYS.items():
        assert headers.get(name) == value, name
    for name in OTHER:
        assert name not in headers, name
    for name in ACCOUNT:
        if upstream_has_key:
            assert name not in headers, f"{name} went upstream with the proxy's key"
        else:
            # The mock logs a cookie redacted: its presence is what counts.
            assert name in headers, name
