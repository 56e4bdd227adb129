"""How many non-streaming chat completions per second the mock upstream serves on one core.

Starts `python -m harness.mock` through the process manager, drives it with a bounded asyncio
aiohttp load (and with wrk, if installed), prints requests/s, and stops the mock.

    uv run python scripts/mock_throughput.py [--requests 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from harness.pytest.stacks import standalone_mock
from harness.runtime.process import run

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
    lines: list[str] = []
    command = ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url + PATH]
    if run(command, on_output=lines.append) != 0:
        raise SystemExit("wrk failed:\n" + "\n".join(lines))
    return next(line for line in lines if "Requests/sec" in line).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        private, mock = standalone_mock()
        url = mock.url
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
            private.down()


if __name__ == "__main__":
    main()
