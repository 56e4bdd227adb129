"""The Responses API through the proxy: passed through to a native upstream (mock-responses),
and translated onto a chat-only upstream (mock-chat)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from harness.sse import sse_events

NATIVE, TRANSLATED = "mock-responses", "mock-chat"
BOTH = pytest.mark.parametrize("model", [NATIVE, TRANSLATED])


@BOTH
def test_basic(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input="what is a switchyard")
    assert response.status == "completed"
    assert response.output_text == "reply 1: what is a switchyard"
    assert response.output[0].type == "message"
    assert response.output[0].content[0].type == "output_text"  # type: ignore[union-attr]
    assert response.usage is not None
    assert response.usage.input_tokens == 4
    assert response.usage.output_tokens == 6
    assert response.usage.total_tokens == 10
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


@BOTH
def test_metadata_and_instructions_are_preserved(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model,
        input="hello",
        instructions="answer politely",
        metadata={"ticket": "T-17", "team": "gateway"},
    )
    assert response.metadata == {"ticket": "T-17", "team": "gateway"}
    assert response.instructions == "answer politely"
    assert response.usage is not None and response.usage.input_tokens == 3


def test_translation_sends_chat_to_a_chat_only_upstream(client: openai.OpenAI, seen) -> None:
    client.responses.create(model=TRANSLATED, input="translate me", instructions="be terse")
    [request] = seen()
    assert request["upstream"] == "mock-a"
    assert request["path"].endswith("/chat/completions")
    assert request["body"]["messages"] == [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "translate me"},
    ]


def test_native_upstream_gets_the_request_as_sent(client: openai.OpenAI, seen) -> None:
    client.responses.create(model=NATIVE, input="pass me through")
    [request] = seen()
    assert request["upstream"] == "mock-b"
    assert request["path"].endswith("/responses")
    assert request["body"]["input"] == "pass me through"


@BOTH
def test_max_output_tokens_gives_an_incomplete_response(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input="one two three four", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "reply 1:"


@BOTH
def test_streaming_through_the_sdk_helper(client: openai.OpenAI, model: str) -> None:
    deltas: list[str] = []
    with client.responses.stream(model=model, input="stream this please") as stream:
        types = []
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "response.output_text.done" in types
    assert "".join(deltas) == "reply 1: stream this please"
    assert final.output_text == "reply 1: stream this please"
    assert final.usage is not None and final.usage.output_tokens == 5


@BOTH
def test_stream_events_are_numbered_and_have_no_done(http: httpx.Client, model: str) -> None:
    body = {"model": model, "input": "count my events", "stream": True}
    with http.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    events = sse_events(raw)
    names = [name for name, _ in events]
    data = [json.loads(payload) for _, payload in events]
    assert "[DONE]" not in raw
    assert None not in names, "every event is named"
    assert [d["type"] for d in data] == names
    assert [d["sequence_number"] for d in data] == list(range(len(data)))


@BOTH
def test_previous_response_id_continues_the_conversation(
    client: openai.OpenAI, model: str, seen
) -> None:
    first = client.responses.create(model=model, input="my name is Ada")
    second = client.responses.create(
        model=model, input="what is my name", previous_response_id=first.id
    )
    assert second.output_text == "reply 2: what is my name"
    # The second turn's prompt holds the first turn too: 4 + 6 (first reply) + 4 words.
    assert second.usage is not None and second.usage.input_tokens == 14


def test_previous_response_id_reaches_a_chat_upstream_as_history(
    client: openai.OpenAI, seen
) -> None:
    first = client.responses.create(model=TRANSLATED, input="remember blue")
    client.responses.create(model=TRANSLATED, input="which colour", previous_response_id=first.id)
    messages = seen()[-1]["body"]["messages"]
    assert messages == [
        {"role": "user", "content": "remember blue"},
        {"role": "assistant", "content": "reply 1: remember blue"},
        {"role": "user", "content": "which colour"},
    ]


@BOTH
def test_unknown_previous_response_id_is_404(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=model, input="hi", previous_response_id="resp_doesnotexist")
    assert caught.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
