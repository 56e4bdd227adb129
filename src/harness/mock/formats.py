"""Wire objects of the OpenAI API as the mock sends them: chat completions and their chunks,
Responses objects and their stream events, the models list, and error bodies."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.mock.content import (
    Answer,
    Entry,
    Message,
    ToolCall,
    fragments,
    stream_deltas,
    token_logprobs,
)

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


@dataclass
class StreamScript:
    """A complete SSE stream, pre-encoded so that faults can cut or corrupt it between its
    content events (the delta events: text, refusal and call-argument deltas). Content events
    run from `content_start` to `content_end`, with other events (an output item's end, the
    next one's start) among them when an answer has several parts.

    `error_event(sent)` encodes the mid-stream error that replaces the rest of the stream once
    `sent` events went out (its sequence number, for Responses, depends on that).
    """

    events: list[bytes] = field(default_factory=list)
    is_content: list[bool] = field(default_factory=list)
    content_start: int = -1
    error_event: Callable[[int], bytes] = lambda sent: b""
    # The content event carrying `delta` as the stream's event number `position`, for streams
    # whose content is made up on the fly (the `flood` fault).
    content_event: Callable[[int, str], bytes] = lambda position, delta: b""

    def add(self, event: bytes, content: bool = False) -> None:
        if content and self.content_start < 0:
            self.content_start = len(self.events)
        self.events.append(event)
        self.is_content.append(content)

    def mark_content_start(self) -> None:
        """Where content would start when there is none (a stream of an empty reply)."""
        if self.content_start < 0:
            self.content_start = len(self.events)

    @property
    def content_end(self) -> int:
        ends = [index + 1 for index, content in enumerate(self.is_content) if content]
        return ends[-1] if ends else self.content_start

    @property
    def content_count(self) -> int:
        return sum(self.is_content)

    def after_content(self, count: int) -> int:
        """How many events go out up to and including the `count`-th content event."""
        if count <= 0:
            return self.content_start
        seen = 0
        for index, content in enumerate(self.is_content):
            seen += content
            if seen == count:
                return index + 1
        return self.content_end


# --------------------------------------------------------------------------- chat completions


def sse_data(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


def chat_usage(answer: Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
    }


def answer_logprobs(answer: Answer) -> list[dict[str, Any]]:
    """The logprobs of the answer's text (or refusal), one entry per token; [] when none were
    asked for."""
    if answer.top_logprobs is None:
        return []
    return token_logprobs(stream_deltas(answer.words), answer.top_logprobs)


def chat_logprobs(answer: Answer, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A choice's `logprobs` holding `entries`: null unless logprobs were asked for; the
    entries are the refusal's for a refusal, else the content's (null without content)."""
    if answer.top_logprobs is None:
        return None
    if answer.refusal:
        return {"content": None, "refusal": entries}
    has_content = bool(answer.words) or not answer.calls
    return {"content": entries if has_content else None, "refusal": None}


def chat_finish_reason(answer: Answer) -> str:
    if answer.calls:
        return "tool_calls"
    return "length" if answer.truncated else "stop"


def chat_tool_call(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def chat_message(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if answer.refusal:
        message["refusal"] = answer.text
    elif answer.words or not answer.calls:
        message["content"] = answer.text
    if answer.calls:
        message["tool_calls"] = [chat_tool_call(call) for call in answer.calls]
    if answer.reasoning:
        message[answer.reasoning_field] = answer.reasoning_text
    return message


def chat_completion(completion_id: str, created: int, model: str, answer: Answer) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": chat_message(answer),
                "logprobs": chat_logprobs(answer, answer_logprobs(answer)),
                "finish_reason": chat_finish_reason(answer),
            }
        ],
        "usage": chat_usage(answer),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chat_stream(
    completion_id: str, created: int, model: str, answer: Answer, include_usage: bool
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

    def choice(
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]

    error = sse_data(error_body(STREAM_ERROR_MESSAGE, "server_error", code="stream_error"))
    script = StreamScript(
        error_event=lambda sent: error,
        content_event=lambda position, delta: chunk(choice({"content": delta})),
    )
    has_text = not answer.refusal and (answer.words or not answer.calls)
    script.add(
        chunk(choice({"role": "assistant", "content": "" if has_text else None, "refusal": None}))
    )
    script.mark_content_start()
    # A reasoning model's reasoning comes first, a word a chunk, as vLLM streams it.
    for delta in stream_deltas(answer.reasoning):
        script.add(chunk(choice({answer.reasoning_field: delta})), content=True)
    key = "refusal" if answer.refusal else "content"
    # Each token's chunk carries that token's logprobs.
    logprobs = answer_logprobs(answer)
    for index, delta in enumerate(stream_deltas(answer.words)):
        own = chat_logprobs(answer, logprobs[index : index + 1])
        script.add(chunk(choice({key: delta}, logprobs=own)), content=True)
    for index, call in enumerate(answer.calls):
        first = chat_tool_call(call)
        first["function"]["arguments"] = ""
        script.add(chunk(choice({"tool_calls": [{"index": index, **first}]})), content=True)
        for piece in fragments(call.arguments):
            pieces = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            script.add(chunk(choice(pieces)), content=True)
    script.add(chunk(choice({}, chat_finish_reason(answer))))
    if include_usage:
        script.add(chunk([], chat_usage(answer)))
    script.add(SSE_DONE)
    return script


# --------------------------------------------------------------------------- responses


def responses_usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": answer.output_tokens,
        "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
        "total_tokens": answer.total_tokens,
    }


def output_text_part(text: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An `output_text` part; `logprobs` as chat's entries (token, logprob, bytes and the top
    alternatives with the same three), [] unless the request included them."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def event_logprobs(logprobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Logprobs as the text events carry them: token and logprob, and the top alternatives'
    token and logprob (no bytes)."""
    return [
        {
            "token": entry["token"],
            "logprob": entry["logprob"],
            "top_logprobs": [
                {"token": top["token"], "logprob": top["logprob"]} for top in entry["top_logprobs"]
            ],
        }
        for entry in logprobs
    ]


def reasoning_id(message_id: str) -> str:
    """The id of an answer's reasoning item, made from its message's (`msg_<hex>`)."""
    return "rs_" + message_id.removeprefix("msg_")


def reasoning_item(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    """A reasoning item with its reasoning text (as vLLM-style servers return it: no summary,
    nothing encrypted); `text` None: no content yet."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": content,
        "status": status,
    }


def refusal_part(text: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": text}


def output_message(message_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "message",
        "id": message_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(call: ToolCall, status: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": call.item_id,
        "call_id": call.call_id,
        "name": call.name,
        "arguments": arguments,
        "status": status,
    }


def has_message(answer: Answer) -> bool:
    """An answer has a message item unless it is only function calls."""
    return bool(answer.words) or answer.refusal or not answer.calls


def output_items(message_id: str, answer: Answer) -> list[dict[str, Any]]:
    items = []
    if answer.reasoning:
        items.append(reasoning_item(reasoning_id(message_id), "completed", answer.reasoning_text))
    if has_message(answer):
        if answer.refusal:
            part = refusal_part(answer.text)
        else:
            part = output_text_part(answer.text, answer_logprobs(answer))
        items.append(output_message(message_id, "completed", [part]))
    items.extend(function_call_item(call, "completed", call.arguments) for call in answer.calls)
    return items


def stored_items(message_id: str, answer: Answer) -> dict[str, tuple[Entry, ...]]:
    """The entries of each output item, by item id, for `item_reference`."""
    items: dict[str, tuple[Entry, ...]] = {}
    if answer.reasoning:
        # A reasoning item is no turn of the conversation: a reference to it adds nothing.
        items[reasoning_id(message_id)] = ()
    if has_message(answer):
        items[message_id] = (Message("assistant", answer.text),)
    for call in answer.calls:
        items[call.item_id] = (call,)
    return items


def response_object(
    response_id: str,
    created_at: int,
    request: Mapping[str, Any],
    echo: Mapping[str, Any],
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A `response` object echoing the request's settings (`request` is the validated body,
    `echo` its tools, tool_choice, parallel_tool_calls and text as validated)."""
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
        "tools": echo.get("tools", []),
        "tool_choice": echo.get("tool_choice", "auto"),
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "text": echo.get("text", {"format": {"type": "text"}}),
        "error": None,
        "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete" else None),
        "store": request.get("store", True),
        "truncation": "disabled",
        "user": request.get("user"),
        "top_logprobs": request.get("top_logprobs"),
    }


def response_status(answer: Answer) -> str:
    return "incomplete" if answer.truncated and not answer.calls else "completed"


def final_response(
    response_id: str,
    message_id: str,
    created_at: int,
    request: Mapping[str, Any],
    echo: Mapping[str, Any],
    answer: Answer,
) -> dict[str, Any]:
    return response_object(
        response_id,
        created_at,
        request,
        echo,
        status=response_status(answer),
        output=output_items(message_id, answer),
        usage=responses_usage(answer),
    )


def response_event(event: dict[str, Any], sequence_number: int) -> bytes:
    event["sequence_number"] = sequence_number
    event_type: str = event["type"]
    return b"event: " + event_type.encode() + b"\ndata: " + dumps(event) + b"\n\n"


def responses_stream(
    response_id: str,
    message_id: str,
    created_at: int,
    request: Mapping[str, Any],
    echo: Mapping[str, Any],
    answer: Answer,
) -> StreamScript:
    in_progress = response_object(
        response_id, created_at, request, echo, status="in_progress", output=[], usage=None
    )
    final = final_response(response_id, message_id, created_at, request, echo, answer)
    message_index = 1 if answer.reasoning else 0
    text_position = {"item_id": message_id, "output_index": message_index, "content_index": 0}

    def text_delta(delta: str) -> dict[str, Any]:
        return {
            "type": "response.output_text.delta",
            **text_position,
            "delta": delta,
            "logprobs": [],
        }

    def error_event(sent: int) -> bytes:
        error = {
            "type": "error",
            "code": "stream_error",
            "message": STREAM_ERROR_MESSAGE,
            "param": None,
        }
        return response_event(error, sent)

    script = StreamScript(
        error_event=error_event,
        content_event=lambda position, delta: response_event(text_delta(delta), position),
    )

    def add(event: dict[str, Any], content: bool = False) -> None:
        script.add(response_event(event, len(script.events)), content)

    add({"type": "response.created", "response": in_progress})
    add({"type": "response.in_progress", "response": in_progress})
    for output_index, item in enumerate(final["output"]):
        if item["type"] == "message":
            add_message_events(add, script.mark_content_start, item, output_index, answer)
        elif item["type"] == "reasoning":
            add_reasoning_events(add, item, output_index, answer)
        else:
            add_call_events(add, item, output_index)
        add({"type": "response.output_item.done", "output_index": output_index, "item": item})
    add({"type": f"response.{final['status']}", "response": final})
    return script


EventAdder = Callable[..., None]


def add_message_events(
    add: EventAdder,
    mark_content_start: Callable[[], None],
    item: dict[str, Any],
    output_index: int,
    answer: Answer,
) -> None:
    position = {"item_id": item["id"], "output_index": output_index, "content_index": 0}
    add(
        {
            "type": "response.output_item.added",
            "output_index": output_index,
            "item": output_message(item["id"], "in_progress", []),
        }
    )
    part = item["content"][0]
    empty = refusal_part("") if answer.refusal else output_text_part("")
    add({"type": "response.content_part.added", **position, "part": empty})
    mark_content_start()
    if answer.refusal:
        for delta in stream_deltas(answer.words):
            add({"type": "response.refusal.delta", **position, "delta": delta}, content=True)
        add({"type": "response.refusal.done", **position, "refusal": part["refusal"]})
    else:
        # Each token's delta carries that token's logprobs; the done event all of them.
        logprobs = event_logprobs(part["logprobs"])
        for index, delta in enumerate(stream_deltas(answer.words)):
            own = logprobs[index : index + 1]
            add(
                {"type": "response.output_text.delta", **position, "delta": delta, "logprobs": own},
                content=True,
            )
        done = {"text": part["text"], "logprobs": logprobs}
        add({"type": "response.output_text.done", **position, **done})
    add({"type": "response.content_part.done", **position, "part": part})


def add_reasoning_events(
    add: EventAdder, item: dict[str, Any], output_index: int, answer: Answer
) -> None:
    """A reasoning item's events: added empty, its reasoning_text part, a delta a word."""
    position = {"item_id": item["id"], "output_index": output_index, "content_index": 0}
    empty = reasoning_item(item["id"], "in_progress", None)
    add({"type": "response.output_item.added", "output_index": output_index, "item": empty})
    part = item["content"][0]
    add({"type": "response.content_part.added", **position, "part": {**part, "text": ""}})
    for delta in stream_deltas(answer.reasoning):
        add({"type": "response.reasoning_text.delta", **position, "delta": delta}, content=True)
    add({"type": "response.reasoning_text.done", **position, "text": part["text"]})
    add({"type": "response.content_part.done", **position, "part": part})


def add_call_events(add: EventAdder, item: dict[str, Any], output_index: int) -> None:
    added = {**item, "arguments": "", "status": "in_progress"}
    add({"type": "response.output_item.added", "output_index": output_index, "item": added})
    position = {"item_id": item["id"], "output_index": output_index}
    for piece in fragments(item["arguments"]):
        add(
            {"type": "response.function_call_arguments.delta", **position, "delta": piece},
            content=True,
        )
    add(
        {
            "type": "response.function_call_arguments.done",
            **position,
            "arguments": item["arguments"],
            "name": item["name"],
        }
    )
