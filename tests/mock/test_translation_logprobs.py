"""Logprobs and reasoning through the proxy, translated onto a chat-only upstream and passed
through to a native one (docs/contracts.md section 2): `include`'s logprobs and `top_logprobs`
reach the chat upstream and its logprobs come back on output_text parts and text events; a
vLLM-style upstream's reasoning becomes a reasoning item and `response.reasoning_text.*`
events, its reasoning tokens reach `usage`, and it never goes back upstream as a message.

A translated answer must be the native one: both come from the same mock, whose native
Responses API follows the reference, so the tests compare the two event for event."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from harness.pytest.gateway import Gateway, Gateways, mock_upstream, model, proxy_config, unique
from harness.sse import sse_events

LOGPROBS = "message.output_text.logprobs"
RESPONSE_EVENT = TypeAdapter(ResponseStreamEvent).validate_python
# The models of the test's proxy: translated onto chat, and the same passed through.
TRANSLATED, NATIVE = "plain", "plain-native"
# Reasoning models (the mock's `-reasoner` family answers chat with `reasoning_content`, the
# `-reasoning` family with `reasoning`), translated and native.
THINKS, THINKS_VLLM, THINKS_NATIVE = "thinks", "thinks-vllm", "thinks-native"
EACH_REASONER = pytest.mark.parametrize("reasoner", [THINKS, THINKS_VLLM])
# Ids the two routes make differently: generated item ids.
ITEM_ID = re.compile(r"^(msg|rs|fc)_[0-9a-f]+$")


@pytest.fixture
def gateway(gateways: Gateways) -> Gateway:
    chat_only, native = unique("lp-chat"), unique("lp-native")
    config = proxy_config(
        [mock_upstream(chat_only, responses=False), mock_upstream(native)],
        [
            model(TRANSLATED, [chat_only]),
            model(NATIVE, [native], upstream_model=TRANSLATED),
            model(THINKS, [chat_only], upstream_model="lp-reasoner"),
            model(THINKS_VLLM, [chat_only], upstream_model="lp-reasoning"),
            model(THINKS_NATIVE, [native], upstream_model="lp-reasoner"),
        ],
    )
    return gateways.start(config)


@pytest.fixture
def sdk(gateway: Gateway) -> openai.OpenAI:
    return gateway.sdk()


def upstream_requests(gateway: Gateway, mock_control: Any) -> list[dict[str, Any]]:
    return [
        r for r in mock_control.requests(tag=gateway.tag) if r["path"].endswith("/chat/completions")
    ]


def stream_events(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw events of a streamed Response, each validated as the SDK's event type."""
    with gateway.http().stream("POST", "/v1/responses", json={**body, "stream": True}) as reply:
        assert reply.status_code == 200, reply.read()
        raw = reply.read().decode()
    events = [json.loads(data) for _, data in sse_events(raw)]
    for event in events:
        RESPONSE_EVENT(event)
    Response.model_validate(events[-1]["response"])
    return events


def without_ids(value: Any) -> Any:
    """`value` with generated item ids made equal, to compare the two routes' events."""
    if isinstance(value, dict):
        return {key: without_ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_ids(item) for item in value]
    if isinstance(value, str) and ITEM_ID.match(value):
        return value.split("_")[0] + "_<id>"
    return value


def item_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events between the lifecycle ones (whose Response echoes differ by route)."""
    return without_ids([e for e in events if not isinstance(e.get("response"), dict)])


def text_part(response: Response) -> Any:
    [message] = [item for item in response.output if item.type == "message"]
    [part] = message.content
    assert part.type == "output_text"
    return part


def check_logprobs(entries: list[Any], text: str, top: int) -> None:
    assert "".join(entry.token for entry in entries) == text
    for entry in entries:
        assert entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == top
        assert (entry.top_logprobs[0].token, entry.top_logprobs[0].logprob) == (
            entry.token,
            entry.logprob,
        )


# --------------------------------------------------------------------------- logprobs


def test_included_logprobs_reach_the_translated_output_text(sdk, gateway, mock_control):
    asked = {"input": "how sure are you", "include": [LOGPROBS], "top_logprobs": 3}
    translated = sdk.responses.create(model=TRANSLATED, **asked)
    [sent] = upstream_requests(gateway, mock_control)
    assert (sent["body"]["logprobs"], sent["body"]["top_logprobs"]) == (True, 3)
    part = text_part(translated)
    check_logprobs(part.logprobs, part.text, 3)
    assert translated.top_logprobs == 3
    # Token for token what a Responses upstream answers the same request.
    native = sdk.responses.create(model=NATIVE, **asked)
    assert part.logprobs == text_part(native).logprobs


@pytest.mark.parametrize("asked", [{}, {"top_logprobs": 4}, {"include": []}])
def test_logprobs_not_included_are_not_asked_for(sdk, gateway, mock_control, asked):
    response = sdk.responses.create(model=TRANSLATED, input="x", **asked)
    assert text_part(response).logprobs == []
    [sent] = upstream_requests(gateway, mock_control)
    assert "logprobs" not in sent["body"] and "top_logprobs" not in sent["body"]


def test_streamed_logprobs_are_the_native_stream_s(gateway, mock_control):
    body = {"input": "stream my odds", "include": [LOGPROBS], "top_logprobs": 2}
    translated = stream_events(gateway, {**body, "model": TRANSLATED})
    [sent] = upstream_requests(gateway, mock_control)
    assert (sent["body"]["logprobs"], sent["body"]["top_logprobs"]) == (True, 2)
    deltas = [e for e in translated if e["type"] == "response.output_text.delta"]
    assert deltas and all(
        [entry["token"] for entry in d["logprobs"]] == [d["delta"]] for d in deltas
    )
    native = stream_events(gateway, {**body, "model": NATIVE})
    assert item_events(translated) == item_events(native)


def test_the_sdk_stream_helper_gathers_the_logprobs(sdk):
    asked = {"input": "one two", "include": [LOGPROBS], "top_logprobs": 1}
    with sdk.responses.stream(model=TRANSLATED, **asked) as stream:
        deltas = [event for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    part = text_part(final)
    check_logprobs(part.logprobs, part.text, 1)
    assert [entry.token for d in deltas for entry in d.logprobs] == [e.token for e in part.logprobs]
    assert part.logprobs == text_part(sdk.responses.create(model=TRANSLATED, **asked)).logprobs


@pytest.mark.parametrize(
    ("asked", "param"),
    [
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"include": [LOGPROBS, "file_search_call.results"]}, "include"),
        ({"include": [LOGPROBS], "top_logprobs": 21}, "top_logprobs"),
    ],
)
def test_what_cannot_be_translated_is_refused(sdk, gateway, mock_control, asked, param):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(model=TRANSLATED, input="x", **asked)
    assert refused.value.param == param
    assert upstream_requests(gateway, mock_control) == []


# --------------------------------------------------------------------------- reasoning


@EACH_REASONER
def test_chat_reasoning_becomes_a_reasoning_item(sdk, reasoner):
    response = sdk.responses.create(model=reasoner, input="why is the sky blue")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.summary == [] and reasoning.status == "completed"
    assert [(c.type, c.text) for c in reasoning.content or []] == [
        ("reasoning_text", "reasoning 1: why is the sky blue")
    ]
    assert message.type == "message"
    assert response.output_text == "reply 1: why is the sky blue"
    assert response.usage is not None
    thought = len(reasoning.content[0].text.split())  # type: ignore[index]
    assert response.usage.output_tokens_details.reasoning_tokens == thought
    assert response.usage.output_tokens == thought + len(response.output_text.split())
    # The native answer to the same request has the same items.
    native = sdk.responses.create(model=THINKS_NATIVE, input="why is the sky blue")
    assert without_ids(response.model_dump()["output"]) == without_ids(
        native.model_dump()["output"]
    )
    assert response.usage == native.usage


@EACH_REASONER
def test_streamed_reasoning_is_the_native_stream(gateway, reasoner):
    body = {"input": "think it through", "include": [LOGPROBS]}
    translated = stream_events(gateway, {**body, "model": reasoner})
    names = [event["type"] for event in translated]
    assert names[2:11] == [
        "response.output_item.added",
        "response.content_part.added",
        *["response.reasoning_text.delta"] * 5,
        "response.reasoning_text.done",
        "response.content_part.done",
    ]
    reasoning_id = translated[2]["item"]["id"]
    reasoning_events = [e for e in translated if e.get("item_id") == reasoning_id]
    assert {(e["output_index"], e["content_index"]) for e in reasoning_events} == {(0, 0)}
    assert {e["output_index"] for e in translated if e["type"] == "response.output_text.delta"} == {
        1
    }
    final = translated[-1]["response"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 5
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    native = stream_events(gateway, {**body, "model": THINKS_NATIVE})
    assert item_events(translated) == item_events(native)


def test_the_sdk_stream_helper_gathers_the_reasoning(sdk):
    with sdk.responses.stream(model=THINKS, input="ponder") as stream:
        reasoning = "".join(e.delta for e in stream if e.type == "response.reasoning_text.delta")
        final = stream.get_final_response()
    assert reasoning == "reasoning 1: ponder"
    assert final.output[0].type == "reasoning"
    assert final.output[0].content[0].text == reasoning  # type: ignore[union-attr]
    assert final.output_text == "reply 1: ponder"


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_never_goes_back_upstream(sdk, gateway, mock_control, stream):
    if stream:
        with sdk.responses.stream(model=THINKS, input="my name is Ada") as streamed:
            first = streamed.get_final_response()
    else:
        first = sdk.responses.create(model=THINKS, input="my name is Ada")
    second = sdk.responses.create(
        model=THINKS, input="what is my name", previous_response_id=first.id
    )
    assert second.output_text == "reply 2: what is my name"
    # The stored turn is the answer alone, as chat carries it.
    assert upstream_requests(gateway, mock_control)[-1]["body"]["messages"] == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "reply 1: my name is Ada"},
        {"role": "user", "content": "what is my name"},
    ]
    # The output sent back as input (a stateless client) is accepted, and its reasoning left out.
    replay = [item.model_dump(exclude_none=True) for item in first.output]
    third = sdk.responses.create(
        model=THINKS, input=[*replay, {"role": "user", "content": "and now"}], store=False
    )
    assert third.output_text == "reply 1: and now"
    assert upstream_requests(gateway, mock_control)[-1]["body"]["messages"] == [
        {"role": "assistant", "content": "reply 1: my name is Ada"},
        {"role": "user", "content": "and now"},
    ]
