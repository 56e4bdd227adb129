"""The aiohttp application: upstream endpoints under `/{upstream}/v1/...` (plain `/v1/...` is
upstream `default`), `/health`, and the inspection and control API under `/_mock/`."""

from __future__ import annotations

import asyncio
import enum
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from harness.mock import formats, replay
from harness.mock.content import Entry, decide
from harness.mock.faults import (
    MODEL_FAULTS,
    Fault,
    FaultRules,
    FaultSpecError,
    parse_fault_header,
    reset_connection,
)
from harness.mock.state import (
    Counts,
    RequestLog,
    ResponseStore,
    StoredResponse,
    loggable_headers,
)
from harness.mock.validation import Rejected, chat_request, responses_request

UPSTREAM_NAME = r"[A-Za-z0-9_.-]+"
# `/chat-only/<upstream>/v1/...` is an upstream that has no Responses API, as most
# OpenAI-compatible servers: /v1/responses there is a 404, so only a proxy that translates
# passes a test of translation.
CHAT_ONLY = "chat_only"
DEFAULT_UPSTREAM = "default"
# Request bodies are never refused for size: limiting them is the proxy's job, under test.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
JSON_CONTENT_TYPE = "application/json"
# endpoint path after /v1/ -> (HTTP method, kind used by counts and fault rule `path`)
ENDPOINTS = {
    "chat/completions": ("POST", "chat"),
    "responses": ("POST", "responses"),
    "models": ("GET", "models"),
}
# `responses/{id}` (retrieve, delete) and `responses/{id}/input_items` (list).
STORED_RESPONSE_PATH = re.compile(r"responses/(?P<id>[^/]+)(?P<items>/input_items)?")
STORED_RESPONSE_METHODS = {False: ("GET", "DELETE"), True: ("GET",)}
# Mid-stream faults on a non-streaming request: the nearest non-streaming equivalent.
STREAM_ERROR_STATUS = 500
MALFORMED_JSON_BODY = b"{not json"
# Faults that answer a non-streaming request with a broken 200 body.
MALFORMED_BODY_FAULTS = frozenset({"malformed_body", "malformed_chunk", "not_sse"})
# Faults that shape how a whole (non-streaming) body goes out.
WHOLE_BODY_FAULTS = frozenset({"drip", "truncate", "hang"})


class Cut(enum.Enum):
    """Where a stream stops short of its script."""

    # The connection is closed (FIN after the events already written).
    CLOSE = "close"
    # Nothing more is sent; the mock waits until the client leaves.
    HANG = "hang"


@dataclass
class MockState:
    log: RequestLog = field(default_factory=RequestLog)
    counts: Counts = field(default_factory=Counts)
    rules: FaultRules = field(default_factory=FaultRules)
    responses: ResponseStore = field(default_factory=ResponseStore)
    # Set on shutdown, so that hanging requests let the server exit.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)


STATE = web.AppKey("mock_state", MockState)


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=formats.dumps(payload), status=status, headers=headers, content_type=JSON_CONTENT_TYPE
    )


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


class Call:
    """One request to a named upstream, with its log entry; builds the responses that carry
    `x-mock-upstream` and completes the log entry with their status and outcome."""

    def __init__(self, request: web.Request, state: MockState, upstream: str, kind: str) -> None:
        self.request = request
        self.state = state
        self.upstream = upstream
        self.kind = kind
        self.tag = request.headers.get("x-mock-tag")
        self.headers = {"x-mock-upstream": upstream}
        self.entry = state.log.record(
            upstream=upstream,
            method=request.method,
            path=request.path,
            tag=self.tag,
            headers=loggable_headers(request.headers.items()),
        )
        state.counts.add(self.tag, upstream, kind)

    def finish(self, status: int | None, outcome: str) -> None:
        self.entry["status"] = status
        self.entry["outcome"] = outcome

    def json(
        self,
        payload: Any,
        outcome: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.finish(status, outcome)
        all_headers = {**self.headers, **headers} if headers else self.headers
        response = json_response(payload, status, all_headers)
        self.entry["sent_bytes"] = len(response.body or b"")  # type: ignore[arg-type]
        return response

    def presented_key(self) -> str:
        """The key the client sent (`Authorization: Bearer <key>`), for `echo_key`."""
        authorization = self.request.headers.get("authorization", "")
        return authorization.removeprefix("Bearer ").strip()

    async def write(self, response: web.StreamResponse, data: bytes) -> None:
        """Writes body bytes (waiting while the client does not read) and counts them."""
        await response.write(data)
        self.entry["sent_bytes"] += len(data)

    async def drip(self, response: web.StreamResponse, data: bytes, fault: Fault) -> None:
        """`data` in pieces of `bytes_per_write` bytes, `delay_ms` apart."""
        step = int(fault.spec.get("bytes_per_write", 1))
        delay = fault.number("delay_ms") / 1000
        for start in range(0, len(data), step):
            if start and delay:
                await asyncio.sleep(delay)
            await self.write(response, data[start : start + step])

    async def wait_until_gone(self) -> None:
        """Sends nothing more; only shutdown ends the wait, a client that leaves cancels it."""
        await self.state.shutting_down.wait()
        self.finish(None, "cancelled")
        reset_connection(self.request.transport)

    def close_connection(self) -> None:
        # close(), unlike a reset, first flushes what was already written, so the client
        # sees those bytes and then a body cut short.
        if self.request.transport is not None:
            self.request.transport.close()

    async def body(self, required: str) -> dict[str, Any]:
        raw = await self.request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            self.entry["body"] = raw.decode(errors="replace")
            raise Rejected(400, "We could not parse the JSON body of your request.") from None
        self.entry["body"] = body
        if not isinstance(body, dict):
            raise Rejected(400, "The request body must be a JSON object.")
        model = body.get("model")
        self.entry["model"] = model if isinstance(model, str) else None
        self.entry["stream"] = body.get("stream") is True
        if not isinstance(model, str) or not model:
            raise Rejected(400, "You must provide a model parameter.", param="model")
        if body.get(required) is None:
            raise Rejected(
                400,
                f"Missing required parameter: '{required}'.",
                param=required,
                code="missing_required_parameter",
            )
        return body

    def fault(self, model: str | None) -> Fault | None:
        """Precedence: the `x-mock-fault` header, then a special model name, then the rules."""
        header = self.request.headers.get("x-mock-fault")
        if header is not None:
            try:
                return parse_fault_header(header)
            except FaultSpecError as error:
                raise Rejected(400, str(error), code="invalid_mock_fault") from None
        if model in MODEL_FAULTS:
            return MODEL_FAULTS[model]
        return self.state.rules.take(self.upstream, self.tag, model, self.kind)

    async def start_fault(self, fault: Fault, stream: bool) -> web.StreamResponse | None:
        """Run the part of a fault that comes before the reply; returns the response that
        replaces the reply, or None when the reply goes ahead (delayed or to be cut)."""
        if fault.type == "latency":
            await asyncio.sleep(fault.number("first_byte_ms") / 1000)
            return None
        if fault.type == "status":
            message = fault.spec.get("message")
            if fault.spec.get("echo_key"):
                # Some upstreams quote the key they refuse; it must not reach the proxy's client.
                message = f"Incorrect API key provided: {self.presented_key()}"
            return self.json(
                formats.status_error_body(fault.spec["status"], message),
                fault.outcome,
                status=fault.spec["status"],
                headers=retry_headers(fault.spec),
            )
        if fault.type == "hang" and not fault.mid_stream:
            # Only shutdown ends the wait here: a client that leaves cancels this handler.
            await self.wait_until_gone()
            return web.Response()
        if fault.type == "reset" or (fault.type == "disconnect" and not stream):
            self.finish(None, fault.outcome)
            reset_connection(self.request.transport)
            # Never sent: the connection is gone, and aiohttp drops responses to closed ones.
            return web.Response()
        if fault.type == "malformed_body" or (fault.type in MALFORMED_BODY_FAULTS and not stream):
            self.finish(200, fault.outcome)
            self.entry["sent_bytes"] = len(MALFORMED_JSON_BODY)
            return web.Response(
                body=MALFORMED_JSON_BODY, headers=self.headers, content_type=JSON_CONTENT_TYPE
            )
        if fault.type == "stream_error" and not stream:
            return self.json(
                formats.error_body(
                    formats.STREAM_ERROR_MESSAGE, "server_error", code="stream_error"
                ),
                fault.outcome,
                status=STREAM_ERROR_STATUS,
            )
        # The reply goes ahead, shaped by the fault (`stream` or `whole`).
        return None

    async def whole(self, payload: Any, fault: Fault | None) -> web.StreamResponse:
        """A non-streaming 200 answer; `drip`, `truncate` and a mid-body `hang` shape how its
        bytes go out (the headers always promise the whole body: Content-Length)."""
        outcome = fault.outcome if fault else "ok"
        if fault is None or fault.type not in WHOLE_BODY_FAULTS:
            return self.json(payload, outcome)
        body = formats.dumps(payload)
        response = web.StreamResponse(headers=self.headers)
        response.content_type = JSON_CONTENT_TYPE
        response.content_length = len(body)
        try:
            await response.prepare(self.request)
            self.entry["status"] = 200
            if fault.type == "drip":
                await self.drip(response, body, fault)
                self.finish(200, outcome)
                return response
            await self.write(response, body[: len(body) // 2])
            if fault.type == "truncate":
                self.finish(200, outcome)
                self.close_connection()
                return response
            await self.wait_until_gone()
        except ConnectionError:
            self.finish(200, "cancelled")
        return response

    async def stream(self, script: formats.StreamScript, fault: Fault | None) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE_HEADERS, **self.headers})
        gap = fault.number("between_chunks_ms") / 1000 if fault and fault.type == "latency" else 0
        outcome = fault.outcome if fault else "ok"
        try:
            await response.prepare(self.request)
            self.entry["status"] = 200
            if fault is not None and fault.type == "drip":
                await self.drip(
                    response,
                    b"".join(e for e in stream_events(script, None) if isinstance(e, bytes)),
                    fault,
                )
                self.finish(200, outcome)
                return response
            for index, event in enumerate(stream_events(script, fault)):
                if gap and index:
                    await asyncio.sleep(gap)
                if event is Cut.CLOSE:
                    self.finish(200, outcome)
                    self.close_connection()
                    return response
                if event is Cut.HANG:
                    await self.wait_until_gone()
                    return response
                await self.write(response, event)
        except ConnectionError:
            self.finish(200, "cancelled")
            return response
        self.finish(200, outcome)
        return response


def retry_headers(spec: Mapping[str, Any]) -> dict[str, str]:
    headers = {}
    if "retry_after" in spec:
        headers["Retry-After"] = str(spec["retry_after"])
    if "retry_after_ms" in spec:
        headers["retry-after-ms"] = str(spec["retry_after_ms"])
    return headers


def stream_events(script: formats.StreamScript, fault: Fault | None) -> Iterator[bytes | Cut]:
    """The events actually sent, with a mid-stream fault applied after `after_chunks` content
    events (or after the last one, if there are fewer); a `Cut` says how the stream stops short.
    Made on the fly: a `flood` stream is far too large to hold."""
    events = script.events
    if fault is not None and fault.type == "flood":
        start, end = script.content_start, script.content_end
        yield from events[:start]
        filler = "x" * int(fault.spec.get("chunk_bytes", 1024))
        for index in range(int(fault.spec.get("chunks", 1000))):
            yield script.content_event(start + index, filler)
        yield from events[end:]
        return
    if fault is not None and fault.type == "no_done":
        # Everything but the last event: chat's `[DONE]`, responses' `response.completed`.
        yield from events[:-1]
        return
    if fault is None or not fault.mid_stream:
        yield from events
        return
    sent = script.after_content(min(fault.after_chunks, script.content_count))
    yield from events[:sent]
    if fault.type == "disconnect":
        yield Cut.CLOSE
    elif fault.type == "hang":
        yield Cut.HANG
    elif fault.type == "stream_error":
        yield script.error_event(sent)
    elif fault.type != "truncate":  # truncate: the stream just ends here, cleanly
        line = formats.MALFORMED_EVENT if fault.type == "malformed_chunk" else formats.NOT_SSE_LINE
        yield from [line, *events[sent:]]


def token_limit(body: Mapping[str, Any], keys: Sequence[str]) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise Rejected(400, f"'{key}' must be an integer >= 0.", param=key)
        return value
    return None


# --------------------------------------------------------------------------- upstream endpoints


def wants_stream(body: dict[str, Any], fault: Fault | None) -> bool:
    """`stream: true`, unless the fault is an upstream that ignores it and answers whole."""
    return body.get("stream") is True and (fault is None or fault.type != "ignore_stream")


async def chat_completions(call: Call) -> web.StreamResponse:
    body = await call.body("messages")
    if not isinstance(body["messages"], list):
        raise Rejected(400, "'messages' must be an array.", param="messages")
    limit = token_limit(body, ("max_completion_tokens", "max_tokens"))
    entries, options = chat_request(body, limit)
    model = body["model"]
    fault = call.fault(model)
    stream = wants_stream(body, fault)
    if fault is not None and (early := await call.start_fault(fault, stream)) is not None:
        return early
    answer = decide(entries, options)
    completion_id = new_id("chatcmpl-")
    created = int(time.time())
    if stream:
        options_value = body.get("stream_options")
        include_usage = (
            isinstance(options_value, dict) and options_value.get("include_usage") is True
        )
        script = formats.chat_stream(completion_id, created, model, answer, include_usage)
        return await call.stream(script, fault)
    return await call.whole(formats.chat_completion(completion_id, created, model, answer), fault)


async def responses(call: Call) -> web.StreamResponse:
    body = await call.body("input")
    input_value = body["input"]
    if not isinstance(input_value, (str, list)):
        raise Rejected(400, "'input' must be a string or an array of items.", param="input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise Rejected(400, "'instructions' must be a string.", param="instructions")
    store = call.state.responses
    history: tuple[Entry, ...] = ()
    previous_id = body.get("previous_response_id")
    if previous_id is not None:
        previous = store.get(call.upstream, previous_id) if isinstance(previous_id, str) else None
        if previous is None:
            raise Rejected(
                404,
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = previous
    limit = token_limit(body, ("max_output_tokens",))
    request = responses_request(
        body, limit, history, lambda item_id: store.item(call.upstream, item_id)
    )
    fault = call.fault(body["model"])
    stream = wants_stream(body, fault)
    if fault is not None and (early := await call.start_fault(fault, stream)) is not None:
        return early
    conversation = (*history, *request.entries)
    answer = decide(conversation, request.options)
    response_id = new_id("resp_")
    message_id = new_id("msg_")
    created_at = int(time.time())
    final = formats.final_response(response_id, message_id, created_at, body, request.echo, answer)
    if fault_completes(fault) and body.get("store") is not False:
        # Stored before the reply goes out: the client may continue as soon as it reads it.
        kept = StoredResponse(
            final,
            input_items(input_value),
            (*conversation, *answer.entries()),
            formats.stored_items(message_id, answer),
        )
        store.put(call.upstream, response_id, kept)
    if stream:
        script = formats.responses_stream(
            response_id, message_id, created_at, body, request.echo, answer
        )
        return await call.stream(script, fault)
    return await call.whole(final, fault)


# Faults after which the response never completes: nothing is stored.
INCOMPLETE_FAULTS = frozenset({"disconnect", "stream_error", "truncate", "hang"})


def fault_completes(fault: Fault | None) -> bool:
    return fault is None or fault.type not in INCOMPLETE_FAULTS


# The prefix of the id an input item without one gets, by type.
INPUT_ITEM_ID_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}


def input_items(value: str | list[Any]) -> list[dict[str, Any]]:
    """A request's `input` as `input_items.list` gives it back: each item with an id, and a
    message's text content as content parts."""
    items = [{"role": "user", "content": value}] if isinstance(value, str) else value
    listed = []
    for item in items:
        kind = item.get("type", "message")
        listed_item = {**item, "type": kind}
        if kind == "message":
            role = item.get("role")
            part = "output_text" if role == "assistant" else "input_text"
            content = item.get("content")
            if isinstance(content, str):
                text_part: dict[str, Any] = {"type": part, "text": content}
                if part == "output_text":
                    text_part["annotations"] = []
                listed_item["content"] = [text_part]
            listed_item.setdefault("status", "completed")
        listed_item.setdefault("id", new_id(INPUT_ITEM_ID_PREFIXES.get(kind, "item_")))
        listed.append(listed_item)
    return listed


INPUT_ITEMS_DEFAULT_LIMIT = 20
INPUT_ITEMS_MAX_LIMIT = 100


async def stored_response(call: Call, response_id: str, listing: bool) -> web.StreamResponse:
    """`responses.retrieve`, `responses.delete` and `input_items.list` of a stored response."""
    stored = call.state.responses.response(call.upstream, response_id)
    if stored is None:
        raise Rejected(404, f"Response with id '{response_id}' not found.")
    if listing:
        return call.json(page_of(stored.input_items, call.request.query), "ok")
    if call.request.method == "DELETE":
        call.state.responses.delete(call.upstream, response_id)
        return call.json({"id": response_id, "object": "response", "deleted": True}, "ok")
    if call.request.query.get("stream", "false") != "false":
        raise Rejected(400, "The mock does not stream a stored response again.", param="stream")
    return call.json(stored.response, "ok")


def page_of(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of a list, as the API pages input items: newest first unless `order=asc`,
    `limit` 1-100 (20 by default), after or before an item id."""
    order = query.get("order", "desc")
    if order not in {"asc", "desc"}:
        raise Rejected(
            400,
            f"Invalid value for 'order': expected 'asc' or 'desc', got '{order}'.",
            param="order",
        )
    try:
        limit = int(query.get("limit", INPUT_ITEMS_DEFAULT_LIMIT))
    except ValueError:
        limit = 0
    if not 1 <= limit <= INPUT_ITEMS_MAX_LIMIT:
        raise Rejected(
            400,
            f"Invalid 'limit': expected an integer from 1 to {INPUT_ITEMS_MAX_LIMIT}.",
            param="limit",
        )
    ordered = items if order == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    if "after" in query:
        ordered = ordered[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
    if "before" in query:
        ordered = ordered[: ids.index(query["before"])] if query["before"] in ids else []
    page = ordered[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(ordered) > limit,
    }


MODELS_BODY = formats.models_list()


async def models(call: Call) -> web.StreamResponse:
    fault = call.fault(None)
    if fault is not None and (early := await call.start_fault(fault, stream=False)) is not None:
        return early
    return call.json(MODELS_BODY, fault.outcome if fault else "ok")


ENDPOINT_HANDLERS = {"chat": chat_completions, "responses": responses, "models": models}


async def upstream_endpoint(request: web.Request) -> web.StreamResponse:
    upstream = request.match_info.get("upstream", DEFAULT_UPSTREAM)
    endpoint = request.match_info["endpoint"]
    method, kind = ENDPOINTS.get(endpoint, (None, "other"))
    stored = STORED_RESPONSE_PATH.fullmatch(endpoint)
    if stored is not None and request.method in STORED_RESPONSE_METHODS[bool(stored["items"])]:
        method, kind = request.method, "stored"
    chat_only = CHAT_ONLY in request.match_info
    if method != request.method or (kind in {"responses", "stored"} and chat_only):
        kind = "other"
    call = Call(request, request.app[STATE], upstream, kind)
    if kind == "other":
        message = f"Unknown request URL: {request.method} {request.path}."
        error = formats.error_body(message, "invalid_request_error", code="unknown_url")
        return call.json(error, "error", status=404)
    try:
        # A request that names a cassette gets it replayed, before any fault or content rule.
        if (recorded := await replay.selected(request, endpoint)) is not None:
            response = await replay.play(request, recorded, call.headers, call.write)
            call.finish(response.status, "replayed")
            return response
        if stored is not None:
            return await stored_response(call, stored["id"], listing=bool(stored["items"]))
        return await ENDPOINT_HANDLERS[kind](call)
    except Rejected as rejection:
        return call.json(rejection.body, "error", status=rejection.status)
    except asyncio.CancelledError:
        # The client went away (aiohttp cancels the handler); a fault that dropped the
        # connection itself has already recorded its own outcome.
        if call.entry["outcome"] is None:
            call.entry["outcome"] = "cancelled"
        raise


# --------------------------------------------------------------------------- control API


def control_error(message: str) -> web.Response:
    return json_response(formats.error_body(message, "invalid_request_error"), status=400)


def query_selector(request: web.Request, name: str) -> str | None:
    return request.query.get(name) or None


async def json_or_empty(request: web.Request) -> Any:
    raw = await request.read()
    return json.loads(raw) if raw.strip() else {}


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def list_requests(request: web.Request) -> web.Response:
    limit_text = request.query.get("limit") or None
    if limit_text is not None and not limit_text.isdigit():
        return control_error("limit must be a non-negative integer")
    entries = request.app[STATE].log.query(
        query_selector(request, "upstream"),
        query_selector(request, "tag"),
        int(limit_text) if limit_text is not None else None,
    )
    return json_response({"requests": entries})


async def counts(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].counts.summary(query_selector(request, "tag")))


async def reset(request: web.Request) -> web.Response:
    try:
        selector = await json_or_empty(request)
    except ValueError:
        return control_error("reset body must be JSON")
    if not isinstance(selector, dict) or set(selector) - {"upstream", "tag"}:
        return control_error("reset body may only have `upstream` and `tag`")
    # An empty selector selects nothing in particular, as in the query strings.
    upstream, tag = selector.get("upstream") or None, selector.get("tag") or None
    state = request.app[STATE]
    state.log.remove(upstream, tag)
    state.counts.remove(upstream, tag)
    state.rules.remove(upstream, tag)
    return json_response({"status": "ok"})


async def add_fault_rule(request: web.Request) -> web.Response:
    try:
        rule = request.app[STATE].rules.add(await json_or_empty(request))
    except ValueError as error:  # FaultSpecError or a body that is not JSON
        return control_error(str(error))
    return json_response({"id": rule.id})


async def list_fault_rules(request: web.Request) -> web.Response:
    return json_response({"faults": request.app[STATE].rules.describe()})


async def unknown_route(request: web.Request) -> web.Response:
    message = f"Unknown request URL: {request.method} {request.path}."
    error = formats.error_body(message, "invalid_request_error", code="unknown_url")
    return json_response(error, status=404)


async def _release_hanging_requests(app: web.Application) -> None:
    app[STATE].shutting_down.set()


def create_app() -> web.Application:
    """The mock application. Serve it with `start()`, or with the same runner options:
    without handler cancellation a hanging request would not notice its client leaving."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STATE] = MockState()
    app.on_shutdown.append(_release_hanging_requests)
    app.router.add_get("/health", health)
    app.router.add_get("/_mock/requests", list_requests)
    app.router.add_get("/_mock/counts", counts)
    app.router.add_post("/_mock/reset", reset)
    app.router.add_post("/_mock/faults", add_fault_rule)
    app.router.add_get("/_mock/faults", list_fault_rules)
    app.router.add_route("*", "/v1/{endpoint:.*}", upstream_endpoint)
    upstream_path = f"/{{upstream:{UPSTREAM_NAME}}}/v1/{{endpoint:.*}}"
    app.router.add_route("*", upstream_path, upstream_endpoint)
    app.router.add_route("*", f"/{{{CHAT_ONLY}:chat-only}}{upstream_path}", upstream_endpoint)
    app.router.add_route("*", "/{path:.*}", unknown_route)
    return app


# Streams still running at shutdown get this long to finish before they are cut.
SHUTDOWN_TIMEOUT_SECONDS = 2.0


async def start(host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve a new mock on host:port (0: the OS picks); returns the runner and the bound port."""
    runner = web.AppRunner(
        create_app(),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, runner.addresses[0][1]
