"""/health, /status and /v1/models."""

from __future__ import annotations

import httpx
import openai

CONFIGURED = {"mock-chat", "mock-responses", "mock-impatient", "mock-balanced"}


def test_models_lists_the_configured_models(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert {model.id for model in models} == CONFIGURED
    assert all(model.object == "model" and model.owned_by == "switchyard" for model in models)


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
