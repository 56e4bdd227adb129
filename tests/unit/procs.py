"""Helpers for tests that watch real processes."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

TOY = str(Path(__file__).with_name("toy_server.py"))


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether the process has exited (a zombie counts) within a bounded wait: a kill is
    delivered asynchronously, so the state right after it can still say running."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.01)
    return False
