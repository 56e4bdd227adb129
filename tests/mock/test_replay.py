"""Cassettes replayed by the mock, through the real proxy (README, "Record and replay").

Every expectation is read from the cassette itself, so these tests hold for any cassette in the
folder the mock replays (the shipped ones, recorded from the mock, or real ones recorded with
`invoke record`):
- passthrough (an upstream that speaks the endpoint) relays the recorded body byte for byte;
- a recorded chat stream translated into the Responses API is accepted by the official SDK's
  strict stream helpers and carries the recorded text and tool calls;
- recording through the proxy, as the integration tier would, keeps no key, and the cassette
  replays to the bytes the client first read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from harness.mock import cassette
from harness.mock.recorder import NAME_HEADER
from harness.mock.replay import HEADER, MODEL_PREFIX, folder
from harness.pytest.gateway import Gateway, Gateways, mock_upstream, model, proxy_config, unique
from harness.pytest.recording import recording
from harness.sse import sse_events

FOLDER = folder()
CASSETTES = {name: cassette.load(FOLDER, name) for name in cassette.names(FOLDER)}
ENDPOINTS = ("chat/completions", "responses")


def select(*, endpoint: str | None = None, streamed: bool | None = None) -> list[str]:
    """The cassettes of successful answers on these endpoints (and mode)."""
    return [
        name
        for name, recorded in CASSETTES.items()
        if recorded.status == 200
        and recorded.endpoint.removeprefix("v1/") in ((endpoint,) if endpoint else ENDPOINTS)
        and (streamed is None or recorded.streamed == streamed)
    ]


@pytest.fixture
def proxy(gateways: Gateways) -> Gateway:
    """A proxy with a native upstream (`native`) and a chat-only one (`translated`)."""
    native, chat_only = unique("rp-native"), unique("rp-chat")
    return gateways.start(
        proxy_config(
            [mock_upstream(native), mock_upstream(chat_only, responses=False)],
            [
                model("native", [native]),
                model("translated", [chat_only]),
                model(f"{MODEL_PREFIX}chat-stream", [native]),
                model("renamed", [native], upstream_model=f"{MODEL_PREFIX}chat-stream"),
            ],
        )
    )


def raw_answer(
    client: httpx.Client, recorded: cassette.Cassette, model_name: str, headers: dict[str, str]
) -> tuple[httpx.Response, bytes]:
    """The recorded request sent again (with another model); every byte of the answer."""
    body = {**recorded.request_json(), "model": model_name}
    path = f"/v1/{recorded.endpoint.removeprefix('v1/')}"
    with client.stream("POST", path, json=body, headers=headers) as response:
        return response, b"".join(response.iter_raw())


# --------------------------------------------------------------------------- passthrough


@pytest.mark.parametrize("name", select())
def test_passthrough_of_a_replayed_answer_is_byte_identical(proxy: Gateway, name: str) -> None:
    recorded = CASSETTES[name]
    response, body = raw_answer(proxy.http(), recorded, "native", {HEADER: name})
    assert response.status_code == recorded.status
    assert response.headers["content-type"] == recorded.content_type
    assert response.headers[HEADER] == name  # the mock's, relayed
    assert body == recorded.body
    if not recorded.streamed:
        # A whole body is relayed with its length (re-computed by the proxy: the same).
        assert int(response.headers["content-length"]) == len(recorded.body)


@pytest.mark.parametrize("model_name", [f"{MODEL_PREFIX}chat-stream", "renamed"])
def test_a_model_alias_names_the_cassette(proxy: Gateway, model_name: str) -> None:
    if "chat-stream" not in CASSETTES:
        pytest.skip("no cassette named chat-stream")
    recorded = CASSETTES["chat-stream"]
    # The proxy's model is the alias itself, or a model it renames to the alias.
    response, body = raw_answer(proxy.http(), recorded, model_name, {})
    assert response.status_code == 200
    assert body == recorded.body


def test_an_unknown_cassette_reaches_the_client_as_the_mocks_404(proxy: Gateway) -> None:
    missing = unique("no-such-cassette")
    response = proxy.http().post(
        "/v1/chat/completions",
        json={"model": "native", "messages": [{"role": "user", "content": "x"}]},
        headers={HEADER: missing},
    )
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "cassette_not_found"
    assert missing in error["message"]


# --------------------------------------------------------------------------- translation


def recorded_chat(recorded: cassette.Cassette) -> tuple[str, list[dict[str, str]]]:
    """The text and the tool calls (call_id, name, arguments) a chat stream carries."""
    text, calls = [], {}  # type: ignore[var-annotated]
    for _, data in sse_events(recorded.body.decode()):
        if data == "[DONE]":
            continue
        for choice in json.loads(data).get("choices") or []:
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(
                    call["index"], {"call_id": "", "name": "", "arguments": ""}
                )
                entry["call_id"] += call.get("id") or ""
                function = call.get("function") or {}
                entry["name"] += function.get("name") or ""
                entry["arguments"] += function.get("arguments") or ""
    return "".join(text), [calls[index] for index in sorted(calls)]


def responses_tools(recorded: cassette.Cassette) -> list[dict[str, Any]]:
    """The recorded chat request's function tools, as the Responses API takes them."""
    tools = (recorded.request_json() or {}).get("tools") or []
    return [
        {
            "type": "function",
            "name": tool["function"]["name"],
            "parameters": tool["function"].get("parameters", {}),
            "strict": False,
        }
        for tool in tools
        if tool.get("type") == "function"
    ]


@pytest.mark.parametrize("name", select(endpoint="chat/completions", streamed=True))
def test_a_replayed_chat_stream_translated_to_responses_passes_the_sdks_helpers(
    proxy: Gateway, name: str
) -> None:
    recorded = CASSETTES[name]
    text, calls = recorded_chat(recorded)
    sdk = proxy.sdk(headers={HEADER: name})
    tools = responses_tools(recorded)
    request: dict[str, Any] = {"model": "translated", "input": "replayed"}
    if tools:
        request["tools"] = tools
    with sdk.responses.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_response()
    Response.model_validate(final.model_dump())
    assert final.status == "completed"
    assert [event.type for event in events][:1] == ["response.created"]
    assert events[-1].type == "response.completed"
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == text == final.output_text
    made = [
        {"call_id": item.call_id, "name": item.name, "arguments": item.arguments}
        for item in final.output
        if item.type == "function_call"
    ]
    assert made == calls


@pytest.mark.parametrize("name", select(endpoint="chat/completions", streamed=False))
def test_a_replayed_whole_chat_answer_translated_to_responses(proxy: Gateway, name: str) -> None:
    recorded = CASSETTES[name]
    completion = json.loads(recorded.body)
    sdk = proxy.sdk(headers={HEADER: name})
    response = sdk.responses.create(model="translated", input="replayed")
    Response.model_validate(response.model_dump())
    assert response.output_text == (completion["choices"][0]["message"]["content"] or "")
    assert response.usage is not None
    assert response.usage.input_tokens == completion["usage"]["prompt_tokens"]
    assert response.usage.output_tokens == completion["usage"]["completion_tokens"]


def test_a_cassette_in_the_wrong_mode_is_refused_through_the_proxy(proxy: Gateway) -> None:
    streamed = select(endpoint="chat/completions", streamed=True)
    if not streamed:
        pytest.skip("no streamed chat cassette")
    # A whole Responses request becomes a whole chat request: the stream cassette cannot answer.
    sdk = proxy.sdk(headers={HEADER: streamed[0]})
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="translated", input="replayed")
    assert raised.value.code == "cassette_mismatch"


# --------------------------------------------------------------------------- recording


UPSTREAM_KEY = "sk-replay-upstream-key-0c5e9a7d"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"input": "hi"}),
    ],
    ids=["chat", "responses"],
)
def test_a_stream_recorded_through_the_proxy_keeps_no_key_and_replays_as_read(
    gateways: Gateways, tmp_path: Path, path: str, body: dict[str, Any]
) -> None:
    # The proxy's upstream is a recorder in front of a mock, with a key of its own: how the
    # integration tier would record a real endpoint. The mock replays what was recorded.
    with recording(tmp_path, label="replay-rec", mock_replays=tmp_path) as session:
        recorded_up, direct_up = unique("rp-recorded"), unique("rp-direct")
        native = {"responses": True}
        gateway = gateways.start(
            proxy_config(
                [
                    {
                        "name": recorded_up,
                        "base_url": session.url,
                        "api_key_env": "RP_KEY",
                        **native,
                    },
                    {"name": direct_up, "base_url": f"{session.mock_url}/v1", **native},
                ],
                [model("recorded", [recorded_up]), model("direct", [direct_up])],
            ),
            env={"RP_KEY": UPSTREAM_KEY},
        )
        name = unique("through-proxy")
        request = {**body, "model": "recorded", "stream": True}
        client = gateway.http()
        with client.stream("POST", path, json=request, headers={NAME_HEADER: name}) as first:
            assert first.status_code == 200
            read = b"".join(first.iter_raw())
        assert UPSTREAM_KEY not in session.path(name).read_text()
        recorded = session.load(name)
        # The proxy put the upstream's key in place of the client's; the recorder redacted it.
        assert recorded.request_headers["authorization"] == cassette.REDACTED
        expected = recorded.body
        if path.endswith("/chat/completions"):
            # The proxy asks a chat upstream for usage (it meters every stream), and keeps the
            # usage-only chunk from a client that did not ask for it: the one rewrite.
            assert recorded.request_json()["stream_options"] == {"include_usage": True}
            expected = without_usage_chunk(recorded.body)
            assert expected != recorded.body
        assert read == expected
        # Replayed by the mock through the proxy, the recorded request again: the recorded bytes.
        response, again = raw_answer(client, recorded, "direct", {HEADER: name})
        assert response.status_code == 200
        assert again == recorded.body


def without_usage_chunk(body: bytes) -> bytes:
    """A chat stream without its usage-only chunk (`"choices": []`, with `usage`)."""
    kept = []
    for event in body.split(b"\n\n"):
        data = event.removeprefix(b"data: ")
        if data.startswith(b"{"):
            chunk = json.loads(data)
            if chunk.get("choices") == [] and chunk.get("usage"):
                continue
        kept.append(event)
    return b"\n\n".join(kept)


@pytest.mark.slow
def test_the_integration_tiers_proxy_records_through_a_recorder_when_asked(
    gateways: Gateways,
    mock_control: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The integration tier's own proxy, with the shared mock standing in for the real endpoint.
    monkeypatch.setenv("OPENAI_BASE_URL", f"{mock_control.base_url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("SWITCHYARD_RECORD_DIR", str(tmp_path))
    # Imported here, once the environment is set: the module reads a developer's `.env` for
    # what the environment lacks, and this test must not take a real key from it.
    from harness.pytest.real_endpoint import MODEL, real_proxy

    name = unique("integration")
    with real_proxy() as proxy:
        reply = httpx.post(
            f"{proxy.url(proxy.config.proxy)}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={NAME_HEADER: name},
            timeout=30,
        )
    assert reply.status_code == 200, reply.text
    recorded = cassette.load(tmp_path, name)
    assert recorded.body == reply.content
    assert UPSTREAM_KEY not in cassette.path_of(tmp_path, name).read_text()
    assert recorded.request_headers["authorization"] == cassette.REDACTED
