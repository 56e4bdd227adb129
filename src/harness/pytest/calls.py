"""Calls of the gateway tests: one helper for both endpoints in both modes (`ask`, through the
official SDK), request bodies, raw streams and what they carry, and running jobs at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import openai
import pytest

from harness.sse import sse_events

CHAT, RESPONSES = "chat", "responses"
ENDPOINTS = (CHAT, RESPONSES)
PATHS = {CHAT: "/v1/chat/completions", RESPONSES: "/v1/responses"}

# Parametrizations most tests share: every capability holds on both endpoints, in both modes.
EACH_ENDPOINT = pytest.mark.parametrize("endpoint", ENDPOINTS)
EACH_MODE = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
# The shared stack's models (config/switchyard.toml): the Responses API is passed through to a
# native upstream or translated onto the chat-only one; chat completions reach either as sent.
NATIVE, TRANSLATED = "mock-responses", "mock-chat"
EACH_RESPONSES_UPSTREAM = pytest.mark.parametrize("model", [NATIVE, TRANSLATED])
EACH_CHAT_UPSTREAM = pytest.mark.parametrize("model", [TRANSLATED, NATIVE])

T = TypeVar("T")


# --------------------------------------------------------------------------- content


def words(text: str) -> int:
    return len(text.split())


def reply_to(text: str) -> str:
    """The mock's reply to a single user message (contract section 1)."""
    return " ".join(f"reply 1: {text}".split())


def request_body(
    endpoint: str, model_name: str, text: str, *, stream: bool = False, **params: Any
) -> dict[str, Any]:
    if endpoint == CHAT:
        body: dict[str, Any] = {
            "model": model_name,
            "messages": [{"role": "user", "content": text}],
        }
    else:
        body = {"model": model_name, "input": text}
    if stream:
        body["stream"] = True
    return {**body, **params}


# --------------------------------------------------------------------------- raw streams


def stream_error_event(endpoint: str, raw: str) -> dict[str, Any] | None:
    """The OpenAI-format error event that ends a failed stream, if there is one."""
    for name, data in sse_events(raw):
        if data == "[DONE]":
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            continue
        if endpoint == CHAT and isinstance(payload, dict) and "error" in payload:
            return dict(payload["error"])
        if endpoint == RESPONSES and (name == "error" or payload.get("type") == "error"):
            return dict(payload)
    return None


def stream_text(endpoint: str, raw: str) -> str:
    """The reply text carried by the content deltas of a raw SSE stream."""
    parts = []
    for name, data in sse_events(raw):
        if data == "[DONE]" or not data.startswith("{"):
            continue
        payload = json.loads(data)
        if endpoint == CHAT:
            for choice in payload.get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
        elif (name or payload.get("type")) == "response.output_text.delta":
            parts.append(payload["delta"])
    return "".join(parts)


def read_stream(
    client: httpx.Client,
    endpoint: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, str]:
    """POST a streaming request; the response and every byte of its body that arrived, even
    when the connection broke part-way (what arrived before the break is what tests judge)."""
    received = []
    with client.stream("POST", PATHS[endpoint], json=body, headers=headers) as response:
        try:
            for piece in response.iter_raw():
                received.append(piece)
        except httpx.HTTPError:
            pass
    return response, b"".join(received).decode(errors="replace")


def read_until(response: httpx.Response, endpoint: str, enough: Callable[[str], bool]) -> str:
    """Read an open stream until `enough(the reply text so far)` holds, or the stream ends;
    the SSE that arrived. Leaving early is a client hanging up: the caller closes `response`."""
    seen = ""
    for line in response.iter_lines():
        seen += line + "\n\n"
        if enough(stream_text(endpoint, seen)):
            break
    return seen


def stream_completed(endpoint: str, raw: str) -> bool:
    events = sse_events(raw)
    if endpoint == CHAT:
        return any(data == "[DONE]" for _, data in events)
    return any(name in {"response.completed", "response.incomplete"} for name, _ in events)


# --------------------------------------------------------------------------- SDK calls


@dataclass
class Answer:
    """What a client got: status, headers, reply text, usage, and an error (an error status,
    or an error event that ended a stream)."""

    status: int
    headers: Mapping[str, str]
    text: str = ""
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    completed: bool = False
    events: list[Any] = field(default_factory=list)
    # The chat completion's or the response's id.
    id: str | None = None

    @property
    def upstream(self) -> str | None:
        return self.headers.get("x-switchyard-upstream")

    @property
    def attempts(self) -> int:
        return int(self.headers["x-switchyard-attempts"])

    @property
    def cache(self) -> str | None:
        return self.headers.get("x-switchyard-cache")

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")


def ask(
    sdk: openai.OpenAI,
    endpoint: str,
    model_name: str,
    prompt: str = "hello there",
    *,
    stream: bool = False,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> Answer:
    """One call through the official SDK, on either endpoint, streamed or not; `prompt` is the
    user message (`params` may hold any request field, `text` of the Responses API included)."""
    request: dict[str, Any] = {"model": model_name, "extra_headers": headers, **params}
    try:
        if endpoint == CHAT:
            request.setdefault("messages", [{"role": "user", "content": prompt}])
            return _ask_chat(sdk, request, stream)
        request.setdefault("input", prompt)
        return _ask_responses(sdk, request, stream)
    except openai.APIStatusError as error:
        body = error.response.json()
        assert set(body) == {"error"}, f"not an OpenAI error body: {body}"
        return Answer(error.status_code, error.response.headers, error=dict(body["error"]))


def _ask_chat(sdk: openai.OpenAI, request: dict[str, Any], stream: bool) -> Answer:
    create = sdk.chat.completions
    if not stream:
        raw = create.with_raw_response.create(**request)
        completion = raw.parse()
        usage = completion.usage.model_dump() if completion.usage else None
        text_out = completion.choices[0].message.content or ""
        return Answer(
            raw.status_code, raw.headers, text_out, usage, completed=True, id=completion.id
        )
    with create.with_streaming_response.create(stream=True, **request) as raw:
        answer = Answer(raw.status_code, raw.headers)
        parts: list[str] = []
        try:
            for chunk in raw.parse():
                answer.events.append(chunk)
                answer.id = chunk.id
                parts.extend(choice.delta.content or "" for choice in chunk.choices)
                if any(choice.finish_reason for choice in chunk.choices):
                    answer.completed = True
                if chunk.usage is not None:
                    answer.usage = chunk.usage.model_dump()
        except openai.APIError as error:  # an error event in the stream
            answer.error = error.body if isinstance(error.body, dict) else {"message": str(error)}
            answer.completed = False
        answer.text = "".join(parts)
        return answer


def _ask_responses(sdk: openai.OpenAI, request: dict[str, Any], stream: bool) -> Answer:
    create = sdk.responses
    if not stream:
        raw = create.with_raw_response.create(**request)
        response = raw.parse()
        usage = response.usage.model_dump() if response.usage else None
        return Answer(
            raw.status_code,
            raw.headers,
            response.output_text,
            usage,
            completed=True,
            id=response.id,
        )
    with create.with_streaming_response.create(stream=True, **request) as raw:
        answer = Answer(raw.status_code, raw.headers)
        parts = []
        for event in raw.parse():
            answer.events.append(event)
            if event.type == "response.output_text.delta":
                parts.append(event.delta)
            elif event.type in {"response.completed", "response.incomplete"}:
                answer.completed = True
                answer.id = event.response.id
                if event.response.usage is not None:
                    answer.usage = event.response.usage.model_dump()
            elif event.type == "error":
                answer.error = event.model_dump()
        answer.text = "".join(parts)
        return answer


def concurrently(jobs: Iterable[Callable[[], T]], workers: int = 8) -> list[T]:
    """Run the jobs on a thread pool; results in the order given; any exception is raised."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [future.result() for future in futures]
