"""Clients that are slow or stop half-way (contract section 2): a client that does not read a
large stream does not make the proxy buffer it (backpressure reaches the upstream), and a client
that stops sending its request body, or its headers, is timed out instead of holding a
connection forever.

Raw sockets: the point is what happens on the wire when the client misbehaves, which no HTTP
client library does on purpose.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import psutil
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CLIENT_KEY,
    Gateway,
    Gateways,
    mock_upstream,
    model,
    proxy_config,
    read_until_closed,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.robustness, pytest.mark.slow]

MIB = 1024 * 1024
# The flood the mock would send if nobody pushed back: 4096 events of 64 KiB, 256 MiB.
FLOOD_CHUNKS, FLOOD_CHUNK_BYTES = 4096, 64 * 1024
FLOOD_BYTES = FLOOD_CHUNKS * FLOOD_CHUNK_BYTES


def start_gateway(gateways: Gateways, **server: int) -> tuple[Gateway, str]:
    """A gateway whose `[server]` has these settings besides bind and port."""
    upstream = unique("slow-client")
    config = proxy_config([mock_upstream(upstream)], [model("m", [upstream])], server=server)
    return gateways.start(config), upstream


def request_head(path: str, tag: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: switchyard",
        f"Authorization: Bearer {CLIENT_KEY}",
        "Content-Type: application/json",
        f"x-mock-tag: {tag}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


# --------------------------------------------------------------------------- backpressure


def test_a_client_that_stops_reading_a_huge_stream_does_not_grow_the_proxys_memory(
    gateways: Gateways, mock_control: testing.MockControl, tag: str
) -> None:
    gateway, upstream = start_gateway(gateways)
    process = psutil.Process(gateway.proxy.record.pid)
    # Warm up (allocator, connection pool, TLS-free client) before the baseline.
    assert (
        gateway.http()
        .post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "warm up"}]},
        )
        .is_success
    )
    baseline = process.memory_info().rss

    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "flood"}], "stream": True}
    ).encode()
    flood = f"type=flood;chunks={FLOOD_CHUNKS};chunk_bytes={FLOOD_CHUNK_BYTES}"
    sock = gateway.connect()
    # A small receive buffer, so the kernel on the client's side holds little either.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        head = {"x-mock-fault": flood, "Content-Length": str(len(body))}
        sock.sendall(request_head("/v1/chat/completions", tag, head) + body)
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first[:200]

        def flood_entry() -> dict[str, Any] | None:
            entries = mock_control.requests(tag=tag, upstream=upstream)
            return next((entry for entry in entries if entry["stream"]), None)

        # The client reads nothing more. The mock's writes stop once every buffer on the way is
        # full: wait until its byte count has not moved for a second.
        samples: list[int] = []

        def mock_is_blocked() -> bool:
            entry = flood_entry()
            samples.append(entry["sent_bytes"] if entry else 0)
            recent = samples[-6:]
            return len(recent) == 6 and recent[0] > 0 and len(set(recent)) == 1

        wait_for(mock_is_blocked, what="the mock to be blocked", timeout=60, interval=0.2)
        blocked_at = samples[-1]
        growth = process.memory_info().rss - baseline
        print(
            f"flood of {FLOOD_BYTES / MIB:.0f} MiB: the mock blocked after "
            f"{blocked_at / MIB:.1f} MiB; proxy RSS {baseline / MIB:.1f} MiB "
            f"-> +{growth / MIB:.1f} MiB"
        )
        assert blocked_at < FLOOD_BYTES / 4, "the upstream was held back, not drained"
        assert growth < 32 * MIB, "the proxy does not buffer what the client does not read"

        # Reading again lets the stream move on: the flow is throttled, not dead.
        read = 0
        while read < 8 * MIB:
            read += len(sock.recv(1024 * 1024))
        wait_for(
            lambda: (flood_entry() or {}).get("sent_bytes", 0) > blocked_at,
            what="the mock to send more once the client reads",
            timeout=30,
        )
    finally:
        sock.close()

    # A client gone mid-stream takes the upstream request with it.
    entry = wait_for(
        lambda: (e := flood_entry()) is not None and e["outcome"] is not None and e,
        what="the flood to end upstream",
        timeout=30,
    )
    assert entry["outcome"] == "cancelled"
    assert entry["sent_bytes"] < FLOOD_BYTES
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200


# --------------------------------------------------------------------------- stalled bodies


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_request_body_that_stops_half_way_gets_408(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, framing: str
) -> None:
    gateway, upstream = start_gateway(gateways, request_body_timeout_ms=500)
    partial = b'{"model": "m", "messages": [{"role": "user", "con'
    if framing == "content-length":
        head = {"Content-Length": str(len(partial) + 100)}
        sent = partial
    else:
        head = {"Transfer-Encoding": "chunked"}
        sent = f"{len(partial):x}\r\n".encode() + partial + b"\r\n"
    with gateway.connect() as sock:
        sock.sendall(request_head("/v1/chat/completions", tag, head) + sent)
        # ...and nothing more: the proxy answers, then closes the connection.
        raw = read_until_closed(sock)
    status, body = parse_response(raw)
    assert status == 408
    assert set(body) == {"error"}
    assert body["error"]["code"] == "request_timeout"
    assert body["error"]["type"] == "invalid_request_error"
    assert mock_control.counts(tag=tag)["upstreams"].get(upstream) is None, "nothing went upstream"
    assert httpx.get(f"{gateway.url}/health", timeout=10).status_code == 200


def test_a_body_sent_slowly_but_within_the_timeout_is_served(gateways: Gateways, tag: str) -> None:
    gateway, _ = start_gateway(gateways, request_body_timeout_ms=5000)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "slow body"}]})
    with gateway.connect() as sock:
        sock.sendall(request_head("/v1/chat/completions", tag, {"Content-Length": str(len(body))}))
        for start in range(0, len(body), 16):
            sock.sendall(body[start : start + 16].encode())
            time.sleep(0.01)
        sock.shutdown(socket.SHUT_WR)
        raw = read_until_closed(sock)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    assert b"reply 1: slow body" in raw


def test_headers_that_never_end_get_the_connection_closed(gateways: Gateways, tag: str) -> None:
    gateway, _ = start_gateway(gateways, header_read_timeout_ms=500)
    with gateway.connect() as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: switchyard\r\n")
        raw = read_until_closed(sock)
    assert b"200 OK" not in raw


def test_a_slowloris_trickling_its_headers_is_cut_off_before_it_finishes(
    gateways: Gateways, tag: str
) -> None:
    gateway, _ = start_gateway(gateways, header_read_timeout_ms=500)
    # One byte every 50 ms: each byte is prompt, the whole head would take about 10 s.
    head = request_head("/v1/chat/completions", tag, {"x-padding": "p" * 60})
    sent = 0
    with gateway.connect() as sock:
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            raw = read_until_closed(sock)
            assert b"200 OK" not in raw
    assert sent < len(head), "the proxy closed the connection before the head was complete"


def test_example_config_documents_the_timeouts() -> None:
    from harness.runtime import paths

    text = (paths.root() / "config" / "gateway.example.toml").read_text()
    assert "request_body_timeout_ms = 30000" in text
    assert "header_read_timeout_ms = 30000" in text
