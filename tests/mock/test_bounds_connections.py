"""Connections that send nothing (contract: the proxy's limits): thousands of clients that
connect and then say nothing, or one byte, cost the proxy one file descriptor and a little
memory each, do not stop it serving others, and are closed once the header timeout ends.

Raw sockets, because no HTTP client opens a connection and stays silent on purpose.
"""

from __future__ import annotations

import resource
import selectors
import socket
import time
from collections.abc import Callable

import httpx
import psutil
import pytest

from harness.pytest.gateway import (
    CLIENT_KEY,
    Gateways,
    mock_upstream,
    model,
    proxy_config,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.robustness, pytest.mark.slow]

MIB = 1024 * 1024
IDLE_CONNECTIONS = 5_000
# Long enough that every connection is open before the first is closed, short enough to wait.
HEADER_TIMEOUT_MS = 15_000
# Below the proxy's listen backlog (128).
CONNECT_BATCH = 100
# The documented limits for idle connections: at most this much resident memory each, and
# one file descriptor each (plus the proxy's own few, which FD_SLACK allows for).
RSS_PER_IDLE_CONNECTION = 32 * 1024
FD_SLACK = 64


def raise_open_file_limit(needed: int) -> None:
    """The proxy inherits this process's limit; both hold one descriptor per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_idle_connections(
    address: tuple[str, int], count: int, held: Callable[[], int]
) -> list[socket.socket]:
    """`count` connections, every other one having sent one byte, opened in batches no larger
    than the proxy's listen backlog: each batch waits until the proxy holds it (`held` counts
    what it holds), since a connection the full backlog dropped looks established to its
    client but never reaches the proxy. Non-blocking, as the selector waiting for their end
    needs them."""
    sockets: list[socket.socket] = []
    while len(sockets) < count:
        batch = []
        for _ in range(min(CONNECT_BATCH, count - len(sockets))):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(address)
            batch.append(sock)
        sockets.extend(batch)
        with selectors.DefaultSelector() as pending:
            for sock in batch:
                pending.register(sock, selectors.EVENT_WRITE)
            waiting, deadline = len(batch), time.monotonic() + 30
            while waiting and time.monotonic() < deadline:
                for key, _ in pending.select(timeout=1):
                    pending.unregister(key.fileobj)
                    waiting -= 1
        assert waiting == 0, f"{waiting} connections not established"
        for index, sock in enumerate(batch):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            if index % 2:
                sock.send(b"P")  # one byte, then nothing
        wait_for(
            lambda: held() >= len(sockets),
            what=f"the proxy to accept {len(sockets)} connections",
            timeout=HEADER_TIMEOUT_MS / 1000,
        )
    return sockets


def closed_by_peer(sock: socket.socket) -> bool:
    """Reads what a readable socket has; true at its end (a 408 may come before it)."""
    try:
        return sock.recv(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_thousands_of_idle_connections_are_bounded_and_closed_after_the_header_timeout(
    gateways: Gateways, tag: str
) -> None:
    raise_open_file_limit(IDLE_CONNECTIONS + 1_024)
    upstream = unique("idle")
    gateway = gateways.start(
        proxy_config(
            [mock_upstream(upstream)],
            [model("m", [upstream])],
            server={"header_read_timeout_ms": HEADER_TIMEOUT_MS},
        )
    )
    process = psutil.Process(gateway.proxy.record.pid)
    client = gateway.http()
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-mock-tag": gateway.tag}
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    base_rss, base_fds = process.memory_info().rss, process.num_fds()

    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    idle: list[socket.socket] = []
    try:
        idle = open_idle_connections(
            (host, int(port)), IDLE_CONNECTIONS, lambda: process.num_fds() - base_fds
        )
        peak_rss, peak_fds = process.memory_info().rss, process.num_fds()

        # Served while they are all connected (a fresh connection, not a pooled one).
        with httpx.Client(base_url=gateway.url, timeout=30) as fresh:
            response = fresh.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 200, response.text

        # Every idle connection is closed by the proxy once the header timeout is over.
        selector = selectors.DefaultSelector()
        for sock in idle:
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 120
        open_count = len(idle)
        while open_count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                if closed_by_peer(key.fileobj):  # type: ignore[arg-type]
                    selector.unregister(key.fileobj)
                    open_count -= 1
        selector.close()
        assert open_count == 0, f"{open_count} idle connections still open"
    finally:
        for sock in idle:
            sock.close()

    assert peak_fds <= base_fds + IDLE_CONNECTIONS + FD_SLACK, (base_fds, peak_fds)
    assert peak_rss <= base_rss + IDLE_CONNECTIONS * RSS_PER_IDLE_CONNECTION, (
        f"RSS grew by {(peak_rss - base_rss) / MIB:.1f} MiB for {IDLE_CONNECTIONS} connections"
    )
    # Their descriptors are given back.
    wait_for(
        lambda: process.num_fds() <= base_fds + FD_SLACK,
        what="the proxy to close the idle connections' descriptors",
        timeout=30,
    )
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
