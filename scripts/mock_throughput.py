"""How many non-streaming chat completions per second the mock upstream serves on one core.

Starts `python -m harness.mock` as a subprocess, drives it with a bounded asyncio aiohttp load
(and with wrk, if installed), prints requests/s, and stops the mock.

    PYTHONPATH=src python scripts/mock_throughput.py [--requests 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

SRC = Path(__file__).resolve().parents[1] / "src"
PATH = "/bench/v1/chat/completions"
BODY = {
    "model": "mock-chat",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "How fast can a mock upstream answer a short question?"},
    ],
    "max_tokens": 64,
}
BODY_BYTES = json.dumps(BODY).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
wrk.body = [[{body}]]
"""


def start_mock(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = workdir / "port"
    pythonpath = [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.mock", "--port", "0", "--port-file", str(port_file)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise SystemExit("the mock did not start")
        time.sleep(0.02)
    return process, f"http://127.0.0.1:{int(port_file.read_text())}"


async def drive(url: str, total: int, concurrency: int) -> float:
    # aiohttp rather than httpx as the client: httpx's async pool tops out far below the mock.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:
        remaining = iter(range(total))
        failures = 0

        async def worker() -> None:
            nonlocal failures
            for _ in remaining:
                async with session.post(PATH, data=BODY_BYTES, headers=HEADERS) as reply:
                    await reply.read()
                    failures += reply.status != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} requests failed")
    return total / elapsed


def run_wrk(url: str, workdir: Path, concurrency: int, seconds: int) -> str:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=BODY_BYTES.decode()))
    result = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url + PATH],
        capture_output=True,
        text=True,
        check=True,
    )
    return next(line for line in result.stdout.splitlines() if "Requests/sec" in line).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        process, url = start_mock(workdir)
        try:
            rate = asyncio.run(drive(url, args.requests, args.concurrency))
            load = f"{args.requests} requests, {args.concurrency} concurrent"
            print(f"aiohttp: {load}: {rate:,.0f} req/s")
            if shutil.which("wrk"):
                line = run_wrk(url, workdir, args.concurrency, args.wrk_seconds)
                print(f"wrk:     {args.concurrency} connections, {args.wrk_seconds}s: {line}")
            else:
                print("wrk:     not installed, skipped")
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
