"""The mock answers what a request asks for, as the real API does: logprobs (chat `logprobs` /
`top_logprobs`, Responses `include: ["message.output_text.logprobs"]`) and, for the reasoning
models of a vLLM-style server (names ending `-reasoner` / `-reasoning`), the reasoning before
the answer (docs/contracts.md section 1). Everything it sends is validated by the SDK's types."""

from __future__ import annotations

import re
import typing
from typing import Any

import httpx
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseIncludable, ResponseStreamEvent
from pydantic import TypeAdapter

from harness.mock.validation import INCLUDABLE
from harness.pytest.mock_wire import chat_body, chat_payloads, response_events, wire_events
from harness.runtime import paths

LOGPROBS = "message.output_text.logprobs"
RESPONSE_EVENT = TypeAdapter(ResponseStreamEvent).validate_python
# model -> the chat field its reasoning comes in
REASONERS = {"mock-reasoner": "reasoning_content", "qwen3-reasoning": "reasoning"}


@pytest.fixture
def chat(http: httpx.Client, tag: str):
    """POSTs a chat request to an upstream of this test's own; returns the raw reply."""
    return lambda body: http.post(f"/lp-{tag}/v1/chat/completions", json=body)


@pytest.fixture
def responses(http: httpx.Client, tag: str):
    return lambda body: http.post(f"/lp-{tag}/v1/responses", json=body)


def chunks_of(reply: httpx.Response) -> list[ChatCompletionChunk]:
    return [ChatCompletionChunk.model_validate(c) for c in chat_payloads(wire_events(reply.text))]


def check_entries(entries: list[Any], text: str, top: int) -> None:
    """Logprob entries of `text`: its tokens in order, each a log probability with its UTF-8
    bytes and `top` alternatives, the token itself first and the rest less likely."""
    assert "".join(entry.token for entry in entries) == text
    assert len(entries) == len(text.split())
    for entry in entries:
        assert entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == top
        if top:
            assert (entry.top_logprobs[0].token, entry.top_logprobs[0].logprob) == (
                entry.token,
                entry.logprob,
            )
        ranked = [alternative.logprob for alternative in entry.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        assert len({alternative.token for alternative in entry.top_logprobs}) == top
        assert all(alt.bytes == list(alt.token.encode()) for alt in entry.top_logprobs)


# --------------------------------------------------------------------------- chat


@pytest.mark.parametrize("top", [0, 3, 20])
def test_chat_logprobs_have_an_entry_per_token(chat, top):
    reply = chat(chat_body("how likely is this", logprobs=True, top_logprobs=top))
    completion = ChatCompletion.model_validate(reply.json())
    [choice] = completion.choices
    assert choice.logprobs is not None and choice.logprobs.refusal is None
    check_entries(choice.logprobs.content, choice.message.content, top)


def test_chat_logprobs_without_top_logprobs_have_no_alternatives(chat):
    completion = ChatCompletion.model_validate(chat(chat_body("x y", logprobs=True)).json())
    check_entries(completion.choices[0].logprobs.content, "reply 1: x y", 0)


@pytest.mark.parametrize("asked", [{}, {"logprobs": False}, {"logprobs": None}])
def test_chat_without_logprobs_has_none(chat, asked):
    reply = chat(chat_body("plain", **asked))
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["logprobs"] is None
    stream = chat(chat_body("plain", stream=True, **asked))
    assert all(c.choices[0].logprobs is None for c in chunks_of(stream))


def test_chat_refusal_logprobs_are_the_refusals(chat):
    completion = ChatCompletion.model_validate(
        chat(chat_body("please refuse", logprobs=True, top_logprobs=2)).json()
    )
    [choice] = completion.choices
    assert choice.logprobs.content is None
    check_entries(choice.logprobs.refusal, choice.message.refusal, 2)


def test_chat_stream_chunks_carry_their_own_tokens_logprobs(chat):
    body = chat_body("stream my tokens", logprobs=True, top_logprobs=2)
    whole = ChatCompletion.model_validate(chat(body).json()).choices[0].logprobs.content
    chunks = chunks_of(chat({**body, "stream": True}))
    streamed = []
    for chunk in chunks:
        [choice] = chunk.choices
        if choice.delta.content:
            [entry] = choice.logprobs.content
            assert entry.token == choice.delta.content
            streamed.append(entry)
        else:
            assert choice.logprobs is None
    # The stream's tokens are the whole answer's, one chunk each.
    assert streamed == whole


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": False, "top_logprobs": 0}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": True}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 1.5}, "top_logprobs"),
        ({"logprobs": "true"}, "logprobs"),
    ],
)
def test_chat_logprob_requests_the_api_refuses(chat, fields, param):
    reply = chat(chat_body("x", **fields))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


# --------------------------------------------------------------------------- responses


def output_text(response: Response) -> Any:
    [message] = [item for item in response.output if item.type == "message"]
    [part] = message.content
    assert part.type == "output_text"
    return part


@pytest.mark.parametrize("top", [None, 0, 4])
def test_responses_include_logprobs_on_the_output_text(responses, top):
    body: dict[str, Any] = {
        "model": "mock-chat",
        "input": "rate these words",
        "include": [LOGPROBS],
    }
    if top is not None:
        body["top_logprobs"] = top
    response = Response.model_validate(responses(body).json())
    part = output_text(response)
    check_entries(part.logprobs, part.text, top or 0)
    assert response.top_logprobs == top


@pytest.mark.parametrize("asked", [{}, {"top_logprobs": 5}, {"include": []}])
def test_responses_without_the_include_have_no_logprobs(responses, asked):
    # top_logprobs alone asks for nothing: the API answers `logprobs: []`.
    response = Response.model_validate(responses({"model": "m", "input": "x", **asked}).json())
    assert output_text(response).logprobs == []
    raw = responses({"model": "m", "input": "x", "stream": True, **asked})
    deltas = [e for e in map(RESPONSE_EVENT, (d for _, d in response_events(raw.text)))]
    assert all(e.logprobs == [] for e in deltas if e.type == "response.output_text.delta")


def test_responses_stream_logprobs_ride_on_each_delta_and_the_done_events(responses):
    body = {"model": "m", "input": "one two three", "include": [LOGPROBS], "top_logprobs": 2}
    whole = output_text(Response.model_validate(responses(body).json())).logprobs
    events = [
        RESPONSE_EVENT(data)
        for _, data in response_events(responses({**body, "stream": True}).text)
    ]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    for delta in deltas:
        [entry] = delta.logprobs
        assert entry.token == delta.delta
    slim = [(e.token, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs]) for e in whole]
    assert [
        (e.token, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs])
        for d in deltas
        for e in d.logprobs
    ] == slim
    [done] = [e for e in events if e.type == "response.output_text.done"]
    assert [
        (e.token, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs]) for e in done.logprobs
    ] == slim
    [part_done] = [e for e in events if e.type == "response.content_part.done"]
    assert part_done.part.logprobs == whole
    assert output_text(events[-1].response).logprobs == whole


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"include": [LOGPROBS], "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": -2}, "top_logprobs"),
        ({"include": LOGPROBS}, "include"),
        ({"include": [LOGPROBS, "all.the.things"]}, "include[1]"),
        ({"include": [3]}, "include[0]"),
    ],
)
def test_responses_logprob_requests_the_api_refuses(responses, fields, param):
    reply = responses({"model": "m", "input": "x", **fields})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


# --------------------------------------------------------------------------- reasoning models


@pytest.mark.parametrize(("model", "field"), REASONERS.items())
def test_a_reasoning_model_reasons_before_it_answers(chat, model, field):
    completion = ChatCompletion.model_validate(
        chat({**chat_body("why is the sky blue"), "model": model}).json()
    )
    message = completion.choices[0].message
    reasoning = (message.model_extra or {})[field]
    assert reasoning == "reasoning 1: why is the sky blue"
    other = {"reasoning_content", "reasoning"} - {field}
    assert not other & set(message.model_extra or {})
    usage = completion.usage
    assert usage.completion_tokens_details.reasoning_tokens == len(reasoning.split())
    assert usage.completion_tokens == len(reasoning.split()) + len(message.content.split())


@pytest.mark.parametrize(("model", "field"), REASONERS.items())
def test_a_reasoning_model_streams_its_reasoning_first(chat, model, field):
    body = {**chat_body("think first"), "model": model}
    whole = chat(body).json()["choices"][0]["message"]
    chunks = chat_payloads(
        wire_events(chat({**body, "stream": True, "stream_options": {"include_usage": True}}).text)
    )
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    kinds = [next((key for key in (field, "content") if delta.get(key)), None) for delta in deltas]
    # Role chunk, the reasoning, then the answer, then the finish chunk.
    first_content = kinds.index("content")
    assert set(kinds[1:first_content]) == {field}
    assert set(kinds[first_content:-1]) == {"content"}
    assert "".join(d.get(field, "") for d in deltas) == whole[field]
    assert "".join(d.get("content") or "" for d in deltas) == whole["content"]
    reasoning_tokens = chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning_tokens == len(whole[field].split())


def test_the_token_limit_cuts_the_answer_not_the_reasoning(chat):
    body = {**chat_body("one two three"), "model": "mock-reasoner", "max_completion_tokens": 2}
    completion = ChatCompletion.model_validate(chat(body).json())
    [choice] = completion.choices
    assert choice.finish_reason == "length"
    assert choice.message.content == "reply 1:"
    assert choice.message.model_extra["reasoning_content"] == "reasoning 1: one two three"


@pytest.mark.parametrize("model", ["mock-chat", "reasoner", "mock-reasoner-v2"])
def test_other_models_do_not_reason(chat, model):
    body = chat(chat_body("x", model=model)).json()
    message = body["choices"][0]["message"]
    assert not {"reasoning_content", "reasoning"} & set(message)
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_a_native_reasoning_response_has_a_reasoning_item_first(responses):
    body = {"model": "mock-reasoner", "input": "why", "include": [LOGPROBS]}
    response = Response.model_validate(responses(body).json())
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.summary == []
    assert [(c.type, c.text) for c in reasoning.content] == [("reasoning_text", "reasoning 1: why")]
    assert message.type == "message"
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    assert response.usage.output_tokens == 3 + 3
    check_entries(output_text(response).logprobs, response.output_text, 0)
    # A reference to the reasoning item is accepted and adds nothing to the conversation.
    reference = {"type": "item_reference", "id": reasoning.id}
    follow = {"model": "mock-reasoner", "input": [reference, {"role": "user", "content": "x"}]}
    assert Response.model_validate(responses(follow).json()).usage.input_tokens == 1


def test_a_native_reasoning_stream_sends_the_reasoning_item_first(responses):
    raw = responses({"model": "mock-reasoning", "input": "why", "stream": True})
    events = [RESPONSE_EVENT(data) for _, data in response_events(raw.text)]
    names = [event.type for event in events]
    assert names[:9] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
    ]
    added, done = events[2], events[9]
    assert (added.output_index, added.item.type, added.item.content) == (0, "reasoning", [])
    deltas = [e for e in events if e.type == "response.reasoning_text.delta"]
    assert {(e.item_id, e.output_index, e.content_index) for e in deltas} == {(added.item.id, 0, 0)}
    assert done.type == "response.output_item.done" and done.item.id == added.item.id
    assert "".join(e.delta for e in deltas) == done.item.content[0].text == "reasoning 1: why"
    message_added = events[10]
    assert (message_added.type, message_added.output_index) == ("response.output_item.added", 1)
    assert {e.output_index for e in events if e.type == "response.output_text.delta"} == {1}
    assert [item.type for item in events[-1].response.output] == ["reasoning", "message"]


# --------------------------------------------------------------------------- the includables


def test_every_includable_of_the_api_is_known_to_the_mock_and_the_proxy():
    """The values `include` may hold are the SDK's: the mock takes each, and the proxy's table
    (docs/contracts.md, held equal to `INCLUDE_VALUES` by a Rust test) decides each."""
    api = set(typing.get_args(ResponseIncludable))
    assert set(INCLUDABLE) == api
    doc = (paths.root() / "docs" / "contracts.md").read_text()
    table = doc.split("<!-- responses-include -->")[1].split("<!-- /responses-include -->")[0]
    assert set(re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE)) == api
