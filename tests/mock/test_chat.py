"""Chat Completions through the proxy, parsed by the openai SDK."""

from __future__ import annotations

import json

import httpx
import openai

MODEL = "mock-chat"


def test_non_streaming(client: openai.OpenAI, seen) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there proxy"}]
    )
    assert completion.choices[0].message.content == "reply 1: hello there proxy"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == 8
    [request] = seen()
    assert request["upstream"] == "mock-a"
    assert request["path"].endswith("/chat/completions")


def test_response_says_which_upstream_answered(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert response.headers["x-mock-upstream"] == "mock-a"
    assert response.headers["x-switchyard-upstream"] == "mock-a"
    assert response.headers["x-request-id"]


def test_request_id_is_kept_and_forwarded(http: httpx.Client, seen) -> None:
    response = http.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-request-id": "req-from-client-42"},
    )
    assert response.headers["x-request-id"] == "req-from-client-42"
    assert seen()[0]["headers"]["x-request-id"] == "req-from-client-42"


def test_streaming_is_parsed_by_the_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "stream these four words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({chunk.id for chunk in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "reply 1: stream these four words"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_stream_wire_format_is_passed_through(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "a b c"}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert all("usage" not in p or p["usage"] is None for p in payloads), "no usage unless asked"


def test_system_message_and_multi_turn(client: openai.OpenAI, seen) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    completion = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert completion.choices[0].message.content == "reply 2: second question"
    assert completion.usage is not None and completion.usage.prompt_tokens == 8
    assert seen()[0]["body"]["messages"] == messages


def test_max_tokens_cuts_the_reply(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three four five"}], max_tokens=3
    )
    assert completion.choices[0].message.content == "reply 1: one"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_sampling_parameters_reach_the_upstream(client: openai.OpenAI, seen) -> None:
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.25,
        top_p=0.5,
        seed=7,
    )
    body = seen()[0]["body"]
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.25, 0.5, 7)
