"""The aiohttp application: upstream endpoints under `/{upstream}/v1/...` (plain `/v1/...` is
upstream `default`), `/health`, and the inspection and control API under `/_mock/`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from harness.mock import formats
from harness.mock.content import chat_turns, compose_reply, responses_turns
from harness.mock.faults import (
    MID_STREAM_FAULTS,
    MODEL_FAULTS,
    Fault,
    FaultRules,
    FaultSpecError,
    parse_fault_header,
    reset_connection,
)
from harness.mock.state import Counts, RequestLog, ResponseStore, loggable_headers

UPSTREAM_NAME = r"[A-Za-z0-9_.-]+"
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
# Mid-stream faults on a non-streaming request: the nearest non-streaming equivalent.
STREAM_ERROR_STATUS = 500
MALFORMED_JSON_BODY = b"{not json"


@dataclass
class MockState:
    log: RequestLog = field(default_factory=RequestLog)
    counts: Counts = field(default_factory=Counts)
    rules: FaultRules = field(default_factory=FaultRules)
    responses: ResponseStore = field(default_factory=ResponseStore)
    # Set on shutdown, so that hanging requests let the server exit.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)


STATE = web.AppKey("mock_state", MockState)


class Rejected(Exception):
    """The request is answered with an OpenAI error (4xx) instead of a reply."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = formats.error_body(message, "invalid_request_error", param=param, code=code)


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
        return json_response(payload, status, all_headers)

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
            return self.json(
                formats.status_error_body(fault.spec["status"], fault.spec.get("message")),
                fault.outcome,
                status=fault.spec["status"],
                headers=retry_headers(fault.spec),
            )
        if fault.type == "hang":
            # Only shutdown ends the wait here: a client that leaves cancels this handler.
            await self.state.shutting_down.wait()
            self.finish(None, "cancelled")
            reset_connection(self.request.transport)
            return web.Response()
        if fault.type == "reset" or (fault.type == "disconnect" and not stream):
            self.finish(None, fault.outcome)
            reset_connection(self.request.transport)
            # Never sent: the connection is gone, and aiohttp drops responses to closed ones.
            return web.Response()
        if stream:
            return None
        if fault.type == "malformed_chunk":
            self.finish(200, fault.outcome)
            return web.Response(
                body=MALFORMED_JSON_BODY, headers=self.headers, content_type=JSON_CONTENT_TYPE
            )
        return self.json(
            formats.error_body(formats.STREAM_ERROR_MESSAGE, "server_error", code="stream_error"),
            fault.outcome,
            status=STREAM_ERROR_STATUS,
        )

    async def stream(self, script: formats.StreamScript, fault: Fault | None) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SSE_HEADERS, **self.headers})
        gap = fault.number("between_chunks_ms") / 1000 if fault and fault.type == "latency" else 0
        outcome = fault.outcome if fault else "ok"
        try:
            await response.prepare(self.request)
            self.entry["status"] = 200
            for index, event in enumerate(stream_events(script, fault)):
                if gap and index:
                    await asyncio.sleep(gap)
                if event is None:
                    self.finish(200, outcome)
                    # close(), unlike a reset, first flushes the events already written, so
                    # the client sees them and then a body cut short of its final chunk.
                    if self.request.transport is not None:
                        self.request.transport.close()
                    return response
                await response.write(event)
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


def stream_events(script: formats.StreamScript, fault: Fault | None) -> list[bytes | None]:
    """The events actually sent, with a mid-stream fault applied after `after_chunks` content
    events (or after the last one, if there are fewer); None marks where the connection drops."""
    if fault is None or fault.type not in MID_STREAM_FAULTS:
        return [*script.head, *script.content, *script.tail]
    cut = min(fault.after_chunks, len(script.content))
    sent = [*script.head, *script.content[:cut]]
    if fault.type == "disconnect":
        return [*sent, None]
    if fault.type == "stream_error":
        return [*sent, script.error_event(cut)]
    return [*sent, formats.MALFORMED_EVENT, *script.content[cut:], *script.tail]


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


async def chat_completions(call: Call) -> web.StreamResponse:
    body = await call.body("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise Rejected(400, "'messages' must be an array.", param="messages")
    limit = token_limit(body, ("max_completion_tokens", "max_tokens"))
    model = body["model"]
    stream = body.get("stream") is True
    fault = call.fault(model)
    if fault is not None and (early := await call.start_fault(fault, stream)) is not None:
        return early
    reply = compose_reply(chat_turns(messages), limit)
    completion_id = new_id("chatcmpl-")
    created = int(time.time())
    if stream:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        script = formats.chat_stream(completion_id, created, model, reply, include_usage)
        return await call.stream(script, fault)
    return call.json(
        formats.chat_completion(completion_id, created, model, reply),
        fault.outcome if fault else "ok",
    )


async def responses(call: Call) -> web.StreamResponse:
    body = await call.body("input")
    input_value = body["input"]
    if not isinstance(input_value, (str, list)):
        raise Rejected(400, "'input' must be a string or an array of items.", param="input")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise Rejected(400, "'instructions' must be a string.", param="instructions")
    history: tuple[tuple[str, str], ...] = ()
    previous_id = body.get("previous_response_id")
    if previous_id is not None:
        stored = (
            call.state.responses.get(call.upstream, previous_id)
            if isinstance(previous_id, str)
            else None
        )
        if stored is None:
            raise Rejected(
                404,
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        history = stored
    limit = token_limit(body, ("max_output_tokens",))
    stream = body.get("stream") is True
    fault = call.fault(body["model"])
    if fault is not None and (early := await call.start_fault(fault, stream)) is not None:
        return early
    conversation = (*history, *responses_turns(input_value))
    reply = compose_reply(conversation, limit, extra_input=instructions or "")
    response_id = new_id("resp_")
    message_id = new_id("msg_")
    created_at = int(time.time())
    if fault is None or fault.type not in {"disconnect", "stream_error"}:
        # Stored before the reply goes out: the client may continue as soon as it reads it.
        call.state.responses.put(
            call.upstream, response_id, (*conversation, ("assistant", reply.text))
        )
    if stream:
        script = formats.responses_stream(response_id, message_id, created_at, body, reply)
        return await call.stream(script, fault)
    return call.json(
        formats.final_response(response_id, message_id, created_at, body, reply),
        fault.outcome if fault else "ok",
    )


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
    if method != request.method:
        kind = "other"
    call = Call(request, request.app[STATE], upstream, kind)
    if kind == "other":
        message = f"Unknown request URL: {request.method} {request.path}."
        error = formats.error_body(message, "invalid_request_error", code="unknown_url")
        return call.json(error, "error", status=404)
    try:
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
