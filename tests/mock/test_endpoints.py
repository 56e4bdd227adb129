"""/health, /status, /v1/models and /v1/models/{id}."""

from __future__ import annotations

import httpx
import openai
import pytest

from harness.pytest.gateway import Gateways
from harness.pytest.proxy_configs import mock_upstream, model, proxy_config

CONFIGURED = {"mock-chat", "mock-responses", "mock-impatient", "mock-balanced"}


def test_models_lists_the_configured_models(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert {model.id for model in models} == CONFIGURED
    assert all(model.object == "model" and model.owned_by == "switchyard" for model in models)


def test_a_model_is_retrieved_by_id_as_the_list_shows_it(client: openai.OpenAI) -> None:
    listed = {model.id: model for model in client.models.list()}
    for name in CONFIGURED:
        assert client.models.retrieve(name) == listed[name]


def test_retrieving_a_model_the_proxy_does_not_serve_is_the_apis_404(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert "no-such-model" in caught.value.message


def test_a_model_id_with_slashes_is_retrieved_whole(gateways: Gateways) -> None:
    # Ids like `org/model` are common behind OpenAI-compatible gateways.
    name = "org/team/model-x"
    gateway = gateways.start(proxy_config([mock_upstream("slashed")], [model(name, ["slashed"])]))
    assert gateway.sdk().models.retrieve(name).id == name
    with pytest.raises(openai.NotFoundError):
        gateway.sdk().models.retrieve("org/team")


def test_status_reports_version_uptime_upstreams_and_models(http: httpx.Client) -> None:
    status = http.get("/status").json()
    assert isinstance(status["version"], str) and status["version"]
    assert status["uptime_seconds"] >= 0
    assert {u["name"] for u in status["upstreams"]} >= {"mock-a", "mock-b"}
    assert {m["name"] for m in status["models"]} == CONFIGURED
    assert "sk-" not in http.get("/status").text, "no key in /status"


def test_health(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.headers["x-request-id"]
