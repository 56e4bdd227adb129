"""SIGTERM under load (contract section 2, "Shutdown"): every request accepted before it
completes, new connections are refused while the drain goes on, the proxy exits 0, and the
SQLite ledger, read by a restarted proxy, holds exactly one record per request that got an
answer. A request still running when the grace period ends is cut, and recorded all the same.
"""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.pytest import stacks as testing
from harness.pytest.gateway import (
    CHAT,
    ENDPOINTS,
    PATHS,
    RESPONSES,
    Gateway,
    Gateways,
    Keys,
    mock_upstream,
    model,
    proxy_config,
    records_of,
    reply_to,
    request_body,
    stream_completed,
    stream_text,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.robustness, pytest.mark.slow]

IN_FLIGHT = 120


def ledger_gateway(gateways: Gateways, tmp_path: Path, grace_ms: int) -> tuple[Gateway, str]:
    upstream = unique("drain")
    keys = Keys.make("acme")
    config = proxy_config(
        [mock_upstream(upstream)],
        [model("m", [upstream])],
        server={"shutdown_grace_ms": grace_ms},
        keys=keys,
        ledger={"backend": "sqlite", "path": str(tmp_path / "ledger.sqlite3")},
    )
    return gateways.start(config, keys.env()), keys.tenants["acme"]


@dataclass
class Sent:
    request_id: str
    endpoint: str
    stream: bool
    text: str
    status: int | None = None
    complete: bool = False
    error: str | None = None
    finished_at: float = 0.0


def send(url: str, key: str, tag: str, sent: Sent, fault: str | None) -> Sent:
    """One request on a connection of its own (so none rides on a connection opened earlier)."""
    headers = {"authorization": f"Bearer {key}", "x-mock-tag": tag, "x-request-id": sent.request_id}
    if fault:
        headers["x-mock-fault"] = fault
    body = request_body(sent.endpoint, "m", sent.text, stream=sent.stream)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            if sent.stream:
                with client.stream("POST", PATHS[sent.endpoint], json=body, headers=headers) as r:
                    sent.status = r.status_code
                    raw = r.read().decode()
                sent.complete = stream_completed(sent.endpoint, raw) and stream_text(
                    sent.endpoint, raw
                ) == reply_to(sent.text)
            else:
                response = client.post(PATHS[sent.endpoint], json=body, headers=headers)
                sent.status = response.status_code
                sent.complete = response.status_code == 200
    except httpx.HTTPError as error:
        sent.error = type(error).__name__
    sent.finished_at = time.monotonic()
    return sent


def test_sigterm_under_load_drains_every_accepted_request_and_loses_no_record(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, tmp_path: Path
) -> None:
    gateway, key = ledger_gateway(gateways, tmp_path, grace_ms=15_000)
    proxy = gateway.proxy
    url = gateway.url

    accepted: list[Sent] = []
    for index in range(IN_FLIGHT):
        endpoint = ENDPOINTS[index % 2]
        stream = index % 4 >= 2
        accepted.append(Sent(f"{tag}-in-{index}", endpoint, stream, f"request number {index}"))

    def fault_for(index: int) -> str | None:
        # Two thirds are slowed so they are still in flight at SIGTERM; the rest are quick.
        if index % 3 == 0:
            return None
        return f"type=latency;first_byte_ms={400 + 10 * index};between_chunks_ms=40"

    late: list[Sent] = []
    refused_at: list[float] = []
    stop_late = threading.Event()

    def keep_connecting() -> None:
        """New requests during the drain, until connections are refused."""
        index = 0
        while not stop_late.is_set():
            sent = Sent(f"{tag}-late-{index}", CHAT, False, f"late request {index}")
            send(url, key, tag, sent, None)
            late.append(sent)
            if sent.error in {"ConnectError"}:
                refused_at.append(sent.finished_at)
                return
            index += 1

    with ThreadPoolExecutor(max_workers=IN_FLIGHT + 1) as pool:
        futures = [
            pool.submit(send, url, key, tag, sent, fault_for(index))
            for index, sent in enumerate(accepted)
        ]
        # Every request has reached the upstream: each was accepted by the proxy.
        wait_for(
            lambda: mock_control.counts(tag=tag)["total"] >= IN_FLIGHT,
            what="every request to reach the mock",
            timeout=60,
            interval=0.05,
        )
        proxy.send_signal(signal.SIGTERM)
        late_done = pool.submit(keep_connecting)
        late_done.result(timeout=60)
        stop_late.set()
        for future in futures:
            future.result(timeout=60)

    failed = [s for s in accepted if not (s.status == 200 and s.complete)]
    assert not failed, f"accepted requests that did not complete: {failed[:5]}"
    assert refused_at, "new connections are refused after SIGTERM"
    # The refusal came while the drain was still going on.
    assert any(s.finished_at > refused_at[0] for s in accepted)
    assert proxy.wait_exit(timeout=30) == 0

    answered = [s for s in [*accepted, *late] if s.status is not None]
    assert all(s.status == 200 for s in answered)
    assert all(s.error == "ConnectError" for s in late if s.status is None)

    gateway.restart_proxy()
    records = records_of(gateway, key)["records"]
    ids = [record["request_id"] for record in records]
    assert len(ids) == len(set(ids)), "no request is recorded twice"
    assert set(ids) == {s.request_id for s in answered}, "every answered request, nothing else"
    assert all(record["status"] == 200 for record in records)
    print(
        f"SIGTERM with {len(accepted)} requests accepted: all completed; "
        f"{len(late) - 1} more answered during the drain before connections were refused; "
        f"{len(records)} ledger records after restart"
    )


def test_requests_still_running_when_the_grace_period_ends_are_recorded(
    gateways: Gateways, mock_control: testing.MockControl, tag: str, tmp_path: Path
) -> None:
    gateway, key = ledger_gateway(gateways, tmp_path, grace_ms=1000)
    proxy = gateway.proxy
    headers = {"authorization": f"Bearer {key}", "x-mock-tag": tag}
    stream_id, whole_id = f"{tag}-stream", f"{tag}-whole"
    text = "never going to finish"
    received: dict[str, str] = {}
    first_words = threading.Event()

    def open_stream() -> None:
        body = request_body(RESPONSES, "m", text, stream=True)
        hang = {**headers, "x-request-id": stream_id, "x-mock-fault": "type=hang;after_chunks=2"}
        raw = ""
        try:
            with (
                httpx.Client(base_url=gateway.url, timeout=60) as client,
                client.stream("POST", PATHS[RESPONSES], json=body, headers=hang) as response,
            ):
                for piece in response.iter_text():
                    raw += piece
                    if stream_text(RESPONSES, raw):
                        first_words.set()
        except httpx.HTTPError:
            pass
        received["stream"] = raw

    def hanging_whole() -> None:
        body = request_body(CHAT, "m", text)
        hang = {**headers, "x-request-id": whole_id, "x-mock-fault": "type=hang"}
        try:
            httpx.post(f"{gateway.url}{PATHS[CHAT]}", json=body, headers=hang, timeout=60)
        except httpx.HTTPError as error:
            received["whole"] = type(error).__name__

    threads = [threading.Thread(target=open_stream), threading.Thread(target=hanging_whole)]
    for thread in threads:
        thread.start()
    assert first_words.wait(timeout=30)
    # Both are in flight: the proxy has passed them on.
    wait_for(lambda: mock_control.counts(tag=tag)["total"] == 2, what="both requests upstream")
    proxy.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert proxy.wait_exit(timeout=30) == 0
    assert not stream_completed(RESPONSES, received["stream"]), "cut by the grace period"
    assert received.get("whole") == "RemoteProtocolError", "dropped without an answer"

    gateway.restart_proxy()
    records = {r["request_id"]: r for r in records_of(gateway, key)["records"]}
    assert set(records) == {stream_id, whole_id}
    assert records[stream_id]["status"] == 499
    assert records[stream_id]["completion_tokens"] == 2, "the two deltas the client got"
    assert records[whole_id]["status"] == 499
    # No answer reached the client, but the upstream was sent the prompt.
    assert records[whole_id]["prompt_tokens"] == len(text.split())
    assert records[whole_id]["completion_tokens"] == 0
