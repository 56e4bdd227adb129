"""Structured output and refusals through the proxy, parsed by the SDK's `parse` helpers, on Chat
Completions and on the Responses API (native, and translated onto the chat-only upstream)."""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict

from harness.pytest.calls import (
    EACH_CHAT_UPSTREAM,
    EACH_MODE,
    EACH_RESPONSES_UPSTREAM,
    TRANSLATED,
)


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    explanation: str
    output: str


class MathAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[Step]
    final_answer: str
    confidence: Literal["high", "low"]
    attempts: int


# What the mock's schema rule generates for MathAnswer (contracts, section 1): strings are the
# name of their property, arrays have one item, enums their first member, integers 1.
EXPECTED = MathAnswer(
    steps=[Step(explanation="explanation", output="output")],
    final_answer="final_answer",
    confidence="high",
    attempts=1,
)
QUESTION = [{"role": "user", "content": "solve 8x + 7 = -23"}]


def parsed_chat(
    client: openai.OpenAI, model: str, messages: list[dict[str, Any]], stream: bool
) -> Any:
    """A MathAnswer completion, through the SDK's `parse`, or its `stream` helper."""
    if not stream:
        return client.chat.completions.parse(
            model=model, messages=messages, response_format=MathAnswer
        )
    with client.chat.completions.stream(
        model=model, messages=messages, response_format=MathAnswer
    ) as events:
        return events.get_final_completion()


@EACH_CHAT_UPSTREAM
@EACH_MODE
def test_chat_json_schema_parses(client: openai.OpenAI, model: str, stream: bool) -> None:
    completion = parsed_chat(client, model, QUESTION, stream)
    message = completion.choices[0].message
    assert message.refusal is None
    assert message.parsed == EXPECTED
    assert completion.choices[0].finish_reason == "stop"


@EACH_RESPONSES_UPSTREAM
@EACH_MODE
def test_responses_text_format_parses(client: openai.OpenAI, model: str, stream: bool) -> None:
    if stream:
        with client.responses.stream(model=model, input=QUESTION, text_format=MathAnswer) as events:
            response: Any = events.get_final_response()
    else:
        response = client.responses.parse(model=model, input=QUESTION, text_format=MathAnswer)
    assert response.output_parsed == EXPECTED
    assert response.text.format.type == "json_schema"


def test_translated_text_format_reaches_chat_as_response_format(
    client: openai.OpenAI, seen
) -> None:
    client.responses.parse(model=TRANSLATED, input=QUESTION, text_format=MathAnswer)
    response_format = seen()[-1]["body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "MathAnswer"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["required"] == [
        "steps",
        "final_answer",
        "confidence",
        "attempts",
    ]


def test_chat_json_object_mode(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=TRANSLATED,
        messages=[{"role": "user", "content": "answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {
        "reply": "reply 1: answer in JSON"
    }


@EACH_RESPONSES_UPSTREAM
def test_responses_json_object_mode(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model, input="answer in JSON", text={"format": {"type": "json_object"}}
    )
    assert json.loads(response.output_text) == {"reply": "reply 1: answer in JSON"}


# --------------------------------------------------------------------------- refusals

REFUSED = "please refuse this one"


@EACH_CHAT_UPSTREAM
@EACH_MODE
def test_chat_refusal(client: openai.OpenAI, model: str, stream: bool) -> None:
    completion = parsed_chat(client, model, [{"role": "user", "content": REFUSED}], stream)
    message = completion.choices[0].message
    assert message.refusal == f"I refuse: {REFUSED}"
    assert message.content is None
    assert message.parsed is None


@EACH_RESPONSES_UPSTREAM
@EACH_MODE
def test_responses_refusal(client: openai.OpenAI, model: str, stream: bool) -> None:
    events: list[Any] = []
    if stream:
        with client.responses.stream(model=model, input=REFUSED) as stream_events:
            events = list(stream_events)
            response = stream_events.get_final_response()
    else:
        response = client.responses.create(model=model, input=REFUSED)
    [message] = response.output
    assert message.type == "message"
    [part] = message.content
    assert part.type == "refusal"
    assert part.refusal == f"I refuse: {REFUSED}"
    assert response.output_text == ""
    if stream:
        deltas = [e.delta for e in events if e.type == "response.refusal.delta"]
        [done] = [e for e in events if e.type == "response.refusal.done"]
        assert "".join(deltas) == done.refusal == part.refusal
