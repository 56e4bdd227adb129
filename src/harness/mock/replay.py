"""The mock replays a cassette (`harness.mock.cassette`) when a request names one: by the header
`x-mock-cassette: <name>`, or by the model `cassette:<name>` (the header wins). It answers with
the recorded status, content type and body, chunk by chunk as recorded, pausing between chunks
for their recorded gaps, each cut to `MAX_GAP_MS` so that replays stay fast.

Cassettes are read, on each request, from the folder in SWITCHYARD_CASSETTES (the mock's
`--cassettes` sets it), else from the shipped folder, `tests/cassettes/`. A name with no cassette
is a 404, and a cassette recorded on another endpoint, with another method or in the other mode
(streamed or whole) is a 400, each an OpenAI-format error.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from harness.mock import cassette
from harness.mock.validation import Rejected

CASSETTES_ENV = "SWITCHYARD_CASSETTES"
HEADER = "x-mock-cassette"
MODEL_PREFIX = "cassette:"
# The longest pause replayed, before the headers or between two chunks: a real stream's gaps of
# hundreds of milliseconds would make the fast tier slow. The order of the chunks is kept.
MAX_GAP_MS = 50.0
# src/harness/mock/replay.py -> the repository (the package is installed editable).
SHIPPED = Path(__file__).resolve().parents[3] / "tests" / "cassettes"

Write = Callable[[web.StreamResponse, bytes], Awaitable[None]]


def folder() -> Path:
    configured = os.environ.get(CASSETTES_ENV)
    return Path(configured) if configured else SHIPPED


def _request_json(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _endpoint_key(endpoint: str) -> str:
    # A cassette recorded against a base URL without `/v1` has it in its endpoint.
    return endpoint.strip("/").removeprefix("v1/")


async def selected(request: web.Request, endpoint: str) -> cassette.Cassette | None:
    """The cassette the request names, checked against it; None when it names none."""
    body = _request_json(await request.read())
    model = body.get("model")
    name = request.headers.get(HEADER)
    if name is None and isinstance(model, str) and model.startswith(MODEL_PREFIX):
        name = model.removeprefix(MODEL_PREFIX)
    if name is None:
        return None
    param = None if HEADER in request.headers else "model"
    try:
        recorded = cassette.load(folder(), name)
    except cassette.UnknownCassette:
        message = f"No cassette named {name!r}."
        raise Rejected(404, message, param=param, code="cassette_not_found") from None
    except cassette.CassetteError as error:
        message = f"Cassette {name!r} cannot be replayed: {error}."
        raise Rejected(400, message, param=param, code="invalid_cassette") from None
    streamed = body.get("stream") is True
    if recorded.method != request.method or _endpoint_key(recorded.endpoint) != endpoint:
        what = f"{recorded.method} {recorded.endpoint}"
        message = f"Cassette {name!r} was recorded on {what}, not {request.method} {endpoint}."
        raise Rejected(400, message, param=param, code="cassette_mismatch")
    if recorded.streamed != streamed:
        mode = "streamed" if recorded.streamed else "whole"
        message = f"Cassette {name!r} holds a {mode} answer; this request asks for the other."
        raise Rejected(400, message, param="stream", code="cassette_mismatch")
    return recorded


def pauses(recorded: cassette.Cassette) -> list[float]:
    """The seconds to wait before the headers, then before each chunk: the recorded gaps, each
    cut to MAX_GAP_MS."""
    gaps = [recorded.headers_ms]
    previous = 0.0
    for chunk in recorded.chunks:
        gaps.append(chunk.at_ms - previous)
        previous = chunk.at_ms
    return [max(0.0, min(gap, MAX_GAP_MS)) / 1000 for gap in gaps]


async def play(
    request: web.Request, recorded: cassette.Cassette, headers: Mapping[str, str], write: Write
) -> web.StreamResponse:
    """The recorded answer: status, content type, and the chunks as recorded (`write` sends
    each). A body recorded with a Content-Length is sent with one."""
    response = web.StreamResponse(
        status=recorded.status,
        headers={**headers, "Content-Type": recorded.content_type, HEADER: recorded.name},
    )
    if recorded.response_header("content-length") is not None:
        response.content_length = len(recorded.body)
    before_headers, *before_chunks = pauses(recorded)
    if before_headers:
        await asyncio.sleep(before_headers)
    try:
        await response.prepare(request)
        for pause, chunk in zip(before_chunks, recorded.chunks, strict=True):
            if pause:
                await asyncio.sleep(pause)
            await write(response, chunk.data)
        await response.write_eof()
    except ConnectionError:
        pass  # the client left: nothing more to send
    return response
