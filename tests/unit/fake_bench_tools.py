"""Small Python stand-ins for the benchmark's Rust binaries, so the benchmark's orchestration
(`harness.perf.bench.run_bench`) runs in the unit tier without a built proxy.

python fake_bench_tools.py serve [--config FILE] --port 0 --port-file FILE [...]
    An HTTP server. Without --config it is the upstream: it answers chat completions itself,
    streamed or not. With --config (switchyard's config as the benchmark renders it) it is the
    proxy: it serves only the configured models, forwards to the configured upstream, and with
    `cache.backend = "memory"` answers a repeated body from memory with `x-switchyard-cache: hit`.
    Both count requests in GET /stats and answer GET /health.

python fake_bench_tools.py loadgen --target NAME=URL ... [--stream] [...]
    Sends REQUESTS_PER_TARGET real requests to each target, in turn, and prints the load
    generator's JSON summary (measured latencies) as its last line. FAKE_LOADGEN_LOG names a file
    where each call's arguments are appended; FAKE_LOADGEN_EXIT=N makes it fail with code N
    after printing a few lines; FAKE_LOADGEN_NO_JSON=1 makes it print no summary;
    FAKE_LOADGEN_TERM_PARENT=1 makes it send SIGTERM to its parent (the benchmark) and wait.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from harness.compat import tomllib
from harness.perf.bench_report import percentile

REQUESTS_PER_TARGET = 3
CACHE_HEADER = "x-switchyard-cache"


# --------------------------------------------------------------------------- the server


def completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ready"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }


def stream_events(model: str) -> list[bytes]:
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model}
    events = []
    for text in ("rea", "dy"):
        delta = {**chunk, "choices": [{"index": 0, "delta": {"content": text}}]}
        events.append(f"data: {json.dumps(delta)}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return events


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--chunk-interval-us", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    config = None
    if args.config:
        with open(args.config, "rb") as handle:
            config = tomllib.load(handle)
    lock = threading.Lock()
    counted = {"total": 0}
    cached: dict[bytes, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *values: Any) -> None:
            pass

        def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"content-type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self.reply(200, b'{"status":"ok"}')
            elif self.path == "/stats":
                with lock:
                    self.reply(200, json.dumps({"requests": {"total": counted["total"]}}).encode())
            else:
                self.reply(404, b'{"error":"not found"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path != "/v1/chat/completions":
                self.reply(404, b'{"error":"not found"}')
                return
            with lock:
                counted["total"] += 1
            request = json.loads(body)
            if config is None:
                self.upstream(request)
            else:
                self.proxy(request, body)

        def upstream(self, request: dict[str, Any]) -> None:
            if not request.get("stream"):
                self.reply(200, json.dumps(completion(request["model"])).encode())
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for event in stream_events(request["model"]):
                time.sleep(args.chunk_interval_us / 1e6)
                self.wfile.write(event)
                self.wfile.flush()
            self.close_connection = True

        def proxy(self, request: dict[str, Any], body: bytes) -> None:
            assert config is not None
            if request.get("model") not in {model["name"] for model in config["models"]}:
                self.reply(404, b'{"error":{"message":"unknown model"}}')
                return
            caching = config["cache"]["backend"] == "memory" and not request.get("stream")
            if caching and body in cached:
                self.reply(200, cached[body], {CACHE_HEADER: "hit"})
                return
            base = config["upstreams"][0]["base_url"]
            forwarded = urllib.request.Request(
                f"{base}/chat/completions", data=body, headers={"content-type": "application/json"}
            )
            try:
                with urllib.request.urlopen(forwarded, timeout=10) as answer:
                    status, kind, data = (
                        answer.status,
                        answer.headers["content-type"],
                        answer.read(),
                    )
            except urllib.error.URLError as exc:
                self.reply(502, json.dumps({"error": {"message": str(exc)}}).encode())
                return
            if caching and status == 200:
                cached[body] = data
            headers = {"content-type": kind, **({CACHE_HEADER: "miss"} if caching else {})}
            self.reply(status, data, headers)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as port_file:
        port_file.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


# --------------------------------------------------------------------------- the load generator


def figures(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values) or [0.0]
    return {
        "count": len(values),
        "min": ordered[0],
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "p999": percentile(ordered, 99.9),
        "max": ordered[-1],
    }


def one_request(url: str, body: bytes, stream: bool) -> tuple[int, bool, list[float]]:
    """Status, cache hit, and the microseconds at which each SSE data line arrived (streams)."""
    parts = urlsplit(url)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(
            "POST", "/v1/chat/completions", body, {"content-type": "application/json"}
        )
        response = connection.getresponse()
        hit = (response.getheader(CACHE_HEADER) or "").lower() == "hit"
        arrivals = []
        if stream:
            for line in response:
                if line.startswith(b"data:"):
                    arrivals.append((time.perf_counter() - started) * 1e6)
        else:
            response.read()
        return response.status, hit, arrivals
    finally:
        connection.close()


def measure(name: str, url: str, model: str, stream: bool) -> dict[str, Any]:
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    ).encode()
    latencies: list[float] = []
    ttfts: list[float] = []
    gaps: list[float] = []
    errors: dict[str, int] = {}
    hits = ok = 0
    started = time.perf_counter()
    for _ in range(REQUESTS_PER_TARGET):
        sent = time.perf_counter()
        status, hit, arrivals = one_request(url, body, stream)
        latencies.append((time.perf_counter() - sent) * 1e6)
        if status != 200:
            errors[f"status_{status}"] = errors.get(f"status_{status}", 0) + 1
            continue
        ok += 1
        hits += hit
        if arrivals:
            ttfts.append(arrivals[0])
            gaps += [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    seconds = time.perf_counter() - started
    return {
        "name": name,
        "url": url,
        "measured_s": seconds,
        "completed": ok + sum(errors.values()),
        "ok": ok,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "achieved_rps": round(ok / seconds, 1),
        "cache_hits": hits,
        "latency_us": figures(latencies),
        "send_lag_us": figures([0.0] * len(latencies)),
        "ttft_us": figures(ttfts) if ttfts else None,
        "gap_us": figures(gaps) if ttfts else None,
    }


def loadgen(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--timeout-ms", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--slice-ms", type=int)
    parser.add_argument("--warmup-ms", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--mode", default="open")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args(argv)
    if os.environ.get("FAKE_LOADGEN_LOG"):
        with open(os.environ["FAKE_LOADGEN_LOG"], "a") as log:
            log.write(json.dumps(argv) + "\n")
    print(f"fake loadgen: {len(args.target)} targets, mode {args.mode}", flush=True)
    if os.environ.get("FAKE_LOADGEN_EXIT"):
        print("fake loadgen: giving up on purpose", flush=True)
        sys.exit(int(os.environ["FAKE_LOADGEN_EXIT"]))
    if os.environ.get("FAKE_LOADGEN_NO_JSON"):
        return
    if os.environ.get("FAKE_LOADGEN_TERM_PARENT"):
        # As if the user's terminal sent SIGTERM to the benchmark in the middle of a phase.
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(30)
    started = time.perf_counter()
    targets = []
    for text in args.target:
        name, url = text.split("=", 1)
        targets.append(measure(name, url, args.model, args.stream))
    wall = time.perf_counter() - started
    print(json.dumps({"mode": args.mode, "wall_s": wall, "targets": targets}), flush=True)


if __name__ == "__main__":
    {"serve": serve, "loadgen": loadgen}[sys.argv[1]](sys.argv[2:])
