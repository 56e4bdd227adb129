"""Wire objects of the OpenAI API as the mock sends them: chat completions and their chunks,
Responses objects and their stream events, the models list, and error bodies."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.mock.content import Reply, stream_deltas

MODEL_IDS = ("mock-chat", "mock-small", "mock-large")
# A fixed timestamp keeps the models list byte-identical across runs.
MODELS_CREATED = 1_700_000_000
SYSTEM_FINGERPRINT = "fp_mock"

SSE_DONE = b"data: [DONE]\n\n"
MALFORMED_EVENT = b"data: {not json\n\n"
# A line that is no SSE field at all (no `data:`, no `event:`), then the blank line of an event.
NOT_SSE_LINE = b"this line is not server-sent events\n\n"
STREAM_ERROR_MESSAGE = "mock fault: the upstream failed in the middle of the stream"

_encoder = json.JSONEncoder(separators=(",", ":"))


def dumps(value: Any) -> bytes:
    return _encoder.encode(value).encode()


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def status_error_body(status: int, message: str | None) -> dict[str, Any]:
    """The body OpenAI sends with an HTTP error status, for a `status` fault."""
    message = message or f"mock fault: HTTP {status}"
    if status == 429:
        return error_body(message, "rate_limit_error", code="rate_limit_exceeded")
    if status >= 500:
        return error_body(message, "server_error")
    if status == 401:
        return error_body(message, "authentication_error", code="invalid_api_key")
    if status == 403:
        return error_body(message, "permission_error")
    return error_body(message, "invalid_request_error")


def models_list() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": model_id, "object": "model", "created": MODELS_CREATED, "owned_by": "mock"}
            for model_id in MODEL_IDS
        ],
    }


@dataclass(frozen=True)
class StreamScript:
    """A complete SSE stream, pre-encoded so that faults can cut or corrupt it between the
    content events: `head` events, one `content` event per word, `tail` events.

    `error_event(sent)` encodes the mid-stream error that replaces the rest of the stream once
    `sent` content events went out (its sequence number, for Responses, depends on that).
    """

    head: list[bytes]
    content: list[bytes]
    tail: list[bytes]
    error_event: Callable[[int], bytes]
    # The content event carrying `delta` as content event number `index` (from 0), for streams
    # whose content is made up on the fly (the `flood` fault).
    content_event: Callable[[int, str], bytes]


# --------------------------------------------------------------------------- chat completions


def sse_data(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


def chat_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def chat_finish_reason(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def chat_completion(completion_id: str, created: int, model: str, reply: Reply) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "logprobs": None,
                "finish_reason": chat_finish_reason(reply),
            }
        ],
        "usage": chat_usage(reply),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chat_stream(
    completion_id: str, created: int, model: str, reply: Reply, include_usage: bool
) -> StreamScript:
    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }
        if include_usage:
            payload["usage"] = usage
        return sse_data(payload)

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    tail = [chunk(choice({}, chat_finish_reason(reply)))]
    if include_usage:
        tail.append(chunk([], chat_usage(reply)))
    tail.append(SSE_DONE)
    error = sse_data(error_body(STREAM_ERROR_MESSAGE, "server_error", code="stream_error"))
    return StreamScript(
        head=[chunk(choice({"role": "assistant", "content": ""}))],
        content=[chunk(choice({"content": delta})) for delta in stream_deltas(reply.words)],
        tail=tail,
        error_event=lambda sent: error,
        content_event=lambda index, delta: chunk(choice({"content": delta})),
    )


# --------------------------------------------------------------------------- responses


def responses_usage(reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.total_tokens,
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def output_message(message_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "message",
        "id": message_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def response_object(
    response_id: str,
    created_at: int,
    request: Mapping[str, Any],
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A `response` object echoing the request's settings (`request` is the validated body)."""
    metadata = request.get("metadata")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "model": request["model"],
        "output": output,
        "usage": usage,
        "metadata": metadata if isinstance(metadata, dict) else {},
        "instructions": request.get("instructions"),
        "previous_response_id": request.get("previous_response_id"),
        "temperature": request.get("temperature", 1.0),
        "top_p": request.get("top_p", 1.0),
        "max_output_tokens": request.get("max_output_tokens"),
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}},
        "error": None,
        "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete" else None),
        "store": request.get("store", True),
        "truncation": "disabled",
        "user": request.get("user"),
    }


def final_response(
    response_id: str, message_id: str, created_at: int, request: Mapping[str, Any], reply: Reply
) -> dict[str, Any]:
    return response_object(
        response_id,
        created_at,
        request,
        status="incomplete" if reply.truncated else "completed",
        output=[output_message(message_id, "completed", [output_text_part(reply.text)])],
        usage=responses_usage(reply),
    )


def response_event(event: dict[str, Any], sequence_number: int) -> bytes:
    event["sequence_number"] = sequence_number
    event_type: str = event["type"]
    return b"event: " + event_type.encode() + b"\ndata: " + dumps(event) + b"\n\n"


def responses_stream(
    response_id: str, message_id: str, created_at: int, request: Mapping[str, Any], reply: Reply
) -> StreamScript:
    in_progress = response_object(
        response_id, created_at, request, status="in_progress", output=[], usage=None
    )
    final = final_response(response_id, message_id, created_at, request, reply)
    text = reply.text
    position = {"item_id": message_id, "output_index": 0, "content_index": 0}
    head_events: list[dict[str, Any]] = [
        {"type": "response.created", "response": in_progress},
        {"type": "response.in_progress", "response": in_progress},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": output_message(message_id, "in_progress", []),
        },
        {"type": "response.content_part.added", **position, "part": output_text_part("")},
    ]

    def delta_event(delta: str) -> dict[str, Any]:
        return {"type": "response.output_text.delta", **position, "delta": delta, "logprobs": []}

    content_events = [delta_event(delta) for delta in stream_deltas(reply.words)]
    tail_events: list[dict[str, Any]] = [
        {"type": "response.output_text.done", **position, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **position, "part": output_text_part(text)},
        {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]},
        {"type": f"response.{final['status']}", "response": final},
    ]
    numbered = [
        response_event(event, number)
        for number, event in enumerate([*head_events, *content_events, *tail_events])
    ]
    content_start = len(head_events)
    content_end = content_start + len(content_events)

    def error_event(sent: int) -> bytes:
        error = {
            "type": "error",
            "code": "stream_error",
            "message": STREAM_ERROR_MESSAGE,
            "param": None,
        }
        return response_event(error, content_start + sent)

    return StreamScript(
        head=numbered[:content_start],
        content=numbered[content_start:content_end],
        tail=numbered[content_end:],
        error_event=error_event,
        content_event=lambda index, delta: response_event(
            delta_event(delta), content_start + index
        ),
    )
