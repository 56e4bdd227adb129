"""Every error the proxy returns is in OpenAI format, with the right status."""

from __future__ import annotations

import httpx
import openai
import pytest

from harness.pytest import stacks as testing
from harness.pytest.proxy_configs import SERVER_DEFAULTS, model, unreachable_upstream
from harness.runtime.config import toml_document


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'{"model": 5, "messages": []}',
        b'{"model": "mock-chat", "stream": "yes"}',
        b"",
    ],
    ids=["malformed", "not-an-object", "model-not-a-string", "stream-not-a-bool", "empty"],
)
def test_bad_request_bodies_are_400(http: httpx.Client, path: str, body: bytes) -> None:
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_upstream_500_is_propagated_with_its_body(
    http: httpx.Client, mock_control, tag: str
) -> None:
    mock_control.add_fault({"type": "status", "status": 500, "message": "the mock broke"}, tag=tag)
    response = http.post(
        "/v1/chat/completions",
        json={"model": "mock-chat", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 500
    assert error_of(response)["message"] == "the mock broke"
    assert response.headers["x-mock-upstream"] == "mock-a"


def test_upstream_429_keeps_retry_after(client: openai.OpenAI) -> None:
    faulty = client.with_options(
        default_headers={"x-mock-fault": "type=status;status=429;retry_after=7"}
    )
    with pytest.raises(openai.RateLimitError) as caught:
        faulty.chat.completions.create(
            model="mock-chat", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.response.headers["retry-after"] == "7"


NOWHERE_CONFIG = toml_document(
    {
        "server": SERVER_DEFAULTS,
        "upstreams": [unreachable_upstream("nowhere")],
        "models": [model("mock-nowhere", ["nowhere"])],
    }
)


def test_upstream_down_is_502(stack) -> None:
    private = testing.private_stack(stack, "nowhere", proxy_config=NOWHERE_CONFIG)
    try:
        url = private.url(private.config.proxy)
        with (
            openai.OpenAI(base_url=f"{url}/v1", api_key="sk-x", max_retries=0) as client,
            pytest.raises(openai.APIStatusError) as caught,
        ):
            client.chat.completions.create(
                model="mock-nowhere", messages=[{"role": "user", "content": "x"}]
            )
    finally:
        private.down()
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"


@pytest.mark.slow
def test_upstream_hang_is_504(http: httpx.Client, seen) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": "mock-impatient", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-mock-fault": "type=hang"},
    )
    assert response.status_code == 504
    assert error_of(response)["code"] == "upstream_timeout"


def test_unknown_route_is_an_openai_404(http: httpx.Client) -> None:
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404
    error_of(response)


def test_proxy_survives_bad_input(http: httpx.Client) -> None:
    for body in (b"\xff\xfe", b"{" * 10000, b'{"model": "mock-chat", "messages": "x"}'):
        assert http.post("/v1/chat/completions", content=body).status_code == 400
    assert http.get("/health").status_code == 200
