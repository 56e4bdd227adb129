"""`python -m harness.mock.recorder --out DIR --source mock|real --port 0 --port-file PATH`

A forwarding server that records cassettes (`harness.mock.cassette`). It serves the upstream's
base URL at its own root: a request for `/chat/completions` goes to
`<upstream>/chat/completions`, and its answer comes back unchanged, streamed as it arrives, while
the recorder keeps every chunk with its time. When the answer has ended, the exchange is
written, scrubbed, to `DIR/<name>.json`: `<name>` is the request's `x-mock-record-as` header (not
forwarded), else `<sequence>-<endpoint>[-stream]`.

The upstream's base URL comes from `--upstream` or, so that no credential in it reaches a
command line, from SWITCHYARD_RECORD_UPSTREAM. The recorder asks the upstream for an
uncompressed answer (`Accept-Encoding: identity`): a compressed body could neither be scrubbed
nor replayed as it reads. `GET /_recorder/health` is its own health check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from aiohttp import web

from harness.mock import cassette, formats
from harness.mock.serving import serve_until_stopped

UPSTREAM_ENV = "SWITCHYARD_RECORD_UPSTREAM"
NAME_HEADER = "x-mock-record-as"
# On an answer of the recorder's own (it could not reach the upstream), which it does not record.
ERROR_HEADER = "x-recorder-error"
HEALTH_PATH = "/_recorder/health"
SOURCES = ("mock", "real")
# Never relayed in either direction (RFC 9110 7.6.1), or recomputed by each side.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        NAME_HEADER,
    }
)
# The answer's headers that describe the upstream's connection, not the answer.
NOT_RELAYED = frozenset({"connection", "keep-alive", "transfer-encoding"})


class Recorder:
    def __init__(self, upstream: str, out: Path, source: str, scrubber: cassette.Scrubber):
        self.upstream = upstream.rstrip("/")
        self.out = out
        self.scrubber = scrubber
        self.source = {
            "kind": source,
            "upstream": scrubber.url(self.upstream),
            "recorder": "harness.mock.recorder",
        }
        self.sequence = itertools.count(1)
        self.session: aiohttp.ClientSession | None = None

    def name_for(self, request: web.Request, endpoint: str, body: bytes) -> str:
        named = request.headers.get(NAME_HEADER)
        if named:
            return named
        try:
            streamed = json.loads(body).get("stream") is True
        except (ValueError, AttributeError):
            streamed = False
        stem = endpoint.strip("/").replace("/", "-") or "root"
        return f"{next(self.sequence):03d}-{stem}{'-stream' if streamed else ''}"


RECORDER = web.AppKey("recorder", Recorder)


async def forward(request: web.Request) -> web.StreamResponse:
    recorder = request.app[RECORDER]
    assert recorder.session is not None
    endpoint = request.match_info["endpoint"]
    body = await request.read()
    name = recorder.name_for(request, endpoint, body)
    if not cassette.valid_name(name):
        error = formats.error_body(
            f"invalid cassette name {name!r}", "invalid_request_error", param=NAME_HEADER
        )
        return web.json_response(error, status=400, headers={ERROR_HEADER: "invalid-name"})
    url = f"{recorder.upstream}/{endpoint}"
    if request.query_string:
        url += f"?{request.query_string}"
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    headers.append(("Accept-Encoding", "identity"))
    # Secrets of this exchange, learnt before anything of it is kept.
    scrubber = recorder.scrubber
    scrubber.learn(request.headers.items(), url)
    sent_at = time.monotonic()
    try:
        upstream = await recorder.session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        )
    except (aiohttp.ClientError, ValueError) as exc:
        # ValueError: aiohttp refuses, say, a URL with credentials and an Authorization header.
        message = f"recorder: upstream unreachable ({exc.__class__.__name__})"
        error = formats.error_body(message, "server_error")
        return web.json_response(error, status=502, headers={ERROR_HEADER: "unreachable"})
    async with upstream:
        headers_at = time.monotonic()
        scrubber.learn(upstream.headers.items())
        relayed = [(k, v) for k, v in upstream.headers.items() if k.lower() not in NOT_RELAYED]
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in relayed:
            response.headers.add(key, value)
        chunks: list[cassette.Chunk] = []
        complete = True
        # The cassette is written before the client has the whole answer, so a client that has
        # read it finds the file: a body of known length holds back its last bytes until then
        # (an empty one, its headers), and any other ends (write_eof) only after it.
        expected, received, held = upstream.content_length, 0, b""
        try:
            if expected != 0:
                await response.prepare(request)
            async for data in upstream.content.iter_any():
                chunks.append(cassette.Chunk((time.monotonic() - headers_at) * 1000, data))
                received += len(data)
                if expected is not None and received >= expected:
                    held += data
                else:
                    await response.write(data)
        except (ConnectionError, aiohttp.ClientError):
            complete = False
        recorded = cassette.Cassette(
            name=name,
            source={
                **recorder.source,
                "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            method=request.method,
            endpoint=endpoint,
            url=scrubber.url(url),
            request_headers=dict(scrubber.headers(headers)),
            request_body=scrubber.data(body),
            status=upstream.status,
            response_headers=scrubber.headers(upstream.headers.items()),
            headers_ms=(headers_at - sent_at) * 1000,
            chunks=scrubber.chunks(chunks),
            complete=complete,
        )
        path = cassette.save(recorder.out, recorded)
        print(
            f"recorded {path.name}: {request.method} /{endpoint} -> {upstream.status} "
            f"({len(chunks)} chunks, {len(recorded.body)} bytes"
            f"{'' if complete else ', incomplete'})",
            flush=True,
        )
        if complete:
            with contextlib.suppress(ConnectionError):
                if not response.prepared:
                    await response.prepare(request)
                if held:
                    await response.write(held)
                await response.write_eof()
    return response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(recorder: Recorder) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[RECORDER] = recorder

    async def client_session(app: web.Application):  # type: ignore[no-untyped-def]
        # No overall limit: a stream takes as long as the upstream takes.
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
        recorder.session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        yield
        await recorder.session.close()

    app.cleanup_ctx.append(client_session)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_route("*", "/{endpoint:.*}", forward)
    return app


def scrubber_from_env(names: list[str]) -> cassette.Scrubber:
    """A scrubber that knows the values of these environment variables (never printed)."""
    return cassette.Scrubber(value for name in names if (value := os.environ.get(name)))


async def serve(args: argparse.Namespace, upstream: str) -> None:
    recorder = Recorder(upstream, args.out, args.source, scrubber_from_env(args.scrub_env))
    runner = web.AppRunner(create_app(recorder), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    bound = runner.addresses[0][1]
    await serve_until_stopped(
        runner,
        bound,
        args.port_file,
        lambda port: (
            f"recorder listening on http://{args.host}:{port}, in front of "
            f"{recorder.source['upstream']} ({args.source}), writing to {args.out}"
        ),
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.mock.recorder", description=__doc__)
    parser.add_argument("--upstream", help=f"the upstream's base URL (default: ${UPSTREAM_ENV})")
    parser.add_argument("--out", type=Path, required=True, help="the folder cassettes go to")
    parser.add_argument(
        "--source", choices=SOURCES, required=True, help="what the upstream is, for the label"
    )
    parser.add_argument(
        "--scrub-env",
        action="append",
        default=["OPENAI_API_KEY"],
        metavar="NAME",
        help="scrub this environment variable's value too (repeatable; OPENAI_API_KEY always)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: the OS picks a free port")
    parser.add_argument("--port-file", type=Path, help="where to write the bound port")
    return parser


def main() -> None:
    args = parser().parse_args()
    upstream = args.upstream or os.environ.get(UPSTREAM_ENV)
    if not upstream:
        parser().error(f"give --upstream or set {UPSTREAM_ENV}")
    asyncio.run(serve(args, upstream))


if __name__ == "__main__":
    main()
