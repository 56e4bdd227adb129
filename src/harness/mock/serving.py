"""How the mock's servers (the mock itself, the recorder) run as background services: bound,
their port written where the harness polls for it, then serving until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web


def write_port_file(path: Path, port: int) -> None:
    # Atomic, so a reader polling for the file never sees it empty or half written.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(f"{port}\n")
    os.replace(temporary, path)


async def serve_until_stopped(
    runner: web.AppRunner, port: int, port_file: Path | None, banner: Callable[[int], str]
) -> None:
    """`runner` is set up and listening on `port`; prints `banner(port)` once the port file is
    written, serves until SIGTERM or SIGINT, then cleans the runner up."""
    try:
        if port_file is not None:
            write_port_file(port_file, port)
        print(banner(port), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
