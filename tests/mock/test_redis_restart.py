"""Redis killed and restarted under a steady flow of requests: no request goes unanswered, and
none goes unrecorded.

The response cache lives in Redis; the usage ledger does not. Its durable store is SQLite (a
file in the test's tmp_path here), written by the proxy's own ledger writer, so losing Redis
can cost cache hits but never a record. This test is the proof: a proxy with
`cache.backend = "redis"` against a Redis of its own gets requests from a thread, without a
pause, while Redis is SIGKILLed and started again, twice. Every request gets its full answer
(BYPASS while Redis is down, HIT again once it is back), and afterwards the ledger, read
through /v1/usage and straight from the SQLite file, holds exactly one record per request.

Redis is stopped and started through the harness's process abstraction (the private stack's
`Service`), like every other server of the test.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from harness.pytest.gateway import (
    ENDPOINTS,
    Gateway,
    Gateways,
    Keys,
    ask,
    mock_upstream,
    model,
    proxy_config,
    records_of,
    reply_to,
    start_service_on,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.robustness, pytest.mark.mock, pytest.mark.slow]

TENANT = "acme"
OUTAGES = 2
# Answers to wait for in each phase: before the first kill, while Redis is down, after it is
# back (at least this many, and until a hit shows that caching resumed).
PER_PHASE = 30
# Redis stays down at least this long, so the proxy's reconnection attempts fail many times over.
OUTAGE_SECONDS = 1.0
# Repeated texts (hits while Redis is up); every other request is unique.
POOL = 4


@dataclass
class Reply:
    index: int
    request_id: str
    status: int
    cache: str | None
    text_ok: bool
    # The outage count when the request was sent and when it was answered, and whether Redis
    # was down at either moment.
    sent_in: tuple[int, bool]
    done_in: tuple[int, bool]
    error: str | None = None


class Flow:
    """Requests without a pause from one thread, until stopped; every answer is kept."""

    def __init__(self, sdk: openai.OpenAI, tag: str) -> None:
        self.sdk = sdk
        self.tag = tag
        self.replies: list[Reply] = []
        self.outages = 0
        self.down = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flow", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "a request never came back"

    def phase(self) -> tuple[int, bool]:
        with self._lock:
            return self.outages, self.down

    def set_down(self, down: bool) -> None:
        with self._lock:
            if down:
                self.outages += 1
            self.down = down

    def answered(self, where: tuple[int, bool]) -> list[Reply]:
        """Replies sent and answered entirely within one phase."""
        with self._lock:
            return [r for r in self.replies if r.sent_in == where == r.done_in]

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            self._one(index)
            index += 1

    def _one(self, index: int) -> None:
        endpoint = ENDPOINTS[index % 2]
        stream = index % 3 == 0
        mode = "stream" if stream else "whole"
        # Every other request repeats a small pool (per endpoint and mode: the key differs).
        text = (
            f"pooled {index % POOL} {self.tag}" if index % 2 == 0 else f"unique {index} {self.tag}"
        )
        request_id = f"redis-{index}-{endpoint}-{mode}-{self.tag}"
        sent_in = self.phase()
        try:
            answer = ask(
                self.sdk,
                endpoint,
                "cached",
                text,
                stream=stream,
                headers={"x-request-id": request_id},
            )
            reply = Reply(
                index,
                request_id,
                answer.status,
                answer.cache,
                answer.completed and answer.text == reply_to(text),
                sent_in,
                self.phase(),
                None if answer.error is None else str(answer.error),
            )
        except Exception as exc:  # a broken connection, a timeout: an unanswered request
            reply = Reply(index, request_id, 0, None, False, sent_in, self.phase(), repr(exc))
        with self._lock:
            self.replies.append(reply)


def redis_gateway(gateways: Gateways, ledger_path: Path) -> tuple[Gateway, Keys]:
    upstream = unique("redis-restart")
    keys = Keys.make(TENANT)
    config = proxy_config(
        [mock_upstream(upstream)],
        [model("cached", [upstream])],
        cache={"backend": "redis", "redis_url": "redis://127.0.0.1:${redis.port}/0"},
        keys=keys,
        ledger={"backend": "sqlite", "path": str(ledger_path)},
        prices={"cached": {"input": 1.0, "output": 2.0}},
    )
    return gateways.start(config, keys.env(), own_redis=True), keys


def kill_redis(gateway: Gateway) -> int:
    """SIGKILL the gateway's own Redis (no shutdown of any kind); returns the port it had."""
    redis = gateway.private.services()["redis"]
    port = redis.port
    assert port is not None
    redis.send_signal(signal.SIGKILL)
    redis.wait_exit(timeout=10)
    return port


def test_redis_killed_and_restarted_mid_flow_costs_no_answer_and_no_record(
    gateways: Gateways, tag: str, tmp_path: Path
) -> None:
    ledger_path = tmp_path / "ledger.sqlite3"
    gateway, keys = redis_gateway(gateways, ledger_path)
    flow = Flow(gateway.sdk(keys.tenants[TENANT]), tag)

    def wait_answers(where: tuple[int, bool], *, hit: bool = False, seconds: float = 0) -> None:
        began = time.monotonic()

        def enough() -> bool:
            replies = flow.answered(where)
            hits = any(r.cache == "HIT" for r in replies)
            long_enough = time.monotonic() - began >= seconds
            return len(replies) >= PER_PHASE and (hits or not hit) and long_enough

        what = f"{PER_PHASE} answers in phase {where}" + (" and a cache hit" if hit else "")
        wait_for(enough, what=what, timeout=60, interval=0.05)

    flow.start()
    try:
        wait_answers((0, False), hit=True)
        for outage in range(1, OUTAGES + 1):
            # The outage, as the flow labels it, is the time Redis is surely dead: from after
            # it was reaped until just before it is started again. A request sent and answered
            # within it never reached a Redis.
            port = kill_redis(gateway)
            flow.set_down(True)
            wait_answers((outage, True), seconds=OUTAGE_SECONDS)
            flow.set_down(False)
            start_service_on(gateway, "redis", port)
            wait_answers((outage, False), hit=True)
    finally:
        flow.stop()

    replies = flow.replies
    # Every request got its whole answer, Redis or not.
    unanswered = [r for r in replies if r.status != 200 or not r.text_ok]
    assert not unanswered, unanswered[:5]
    # While Redis was down (sent and answered in the outage) the cache was bypassed; once it was
    # back, it served hits again (`wait_answers(..., hit=True)` waited for one in each phase).
    for outage in range(1, OUTAGES + 1):
        during = flow.answered((outage, True))
        assert during and all(r.cache == "BYPASS" for r in during), Counter(r.cache for r in during)
    assert gateway.metrics().total("switchyard_cache_errors_total") >= OUTAGES

    # Exactly one record per request, in the API and in the SQLite file itself.
    sent = {r.request_id for r in replies}
    assert len(sent) == len(replies)
    usage = wait_for(
        lambda: (
            (u := records_of(gateway, keys.tenants[TENANT]))["totals"]["requests"] >= len(sent)
            and u
        ),
        what=f"{len(sent)} records",
        timeout=10,
    )
    recorded = Counter(record["request_id"] for record in usage["records"])
    assert usage["totals"]["requests"] == len(sent)
    assert set(recorded) == sent
    assert max(recorded.values()) == 1
    assert all(record["status"] == 200 for record in usage["records"])
    hits = {r.request_id for r in replies if r.cache == "HIT"}
    assert {record["request_id"] for record in usage["records"] if record["cached"]} == hits

    with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True) as db:
        rows = [row[0] for row in db.execute("SELECT request_id FROM ledger")]
    assert sorted(rows) == sorted(sent)
    print(
        f"\n{len(replies)} requests through {OUTAGES} Redis outages: "
        f"{Counter(r.cache for r in replies)}, {len(rows)} ledger rows"
    )
