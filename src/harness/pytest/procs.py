"""Helpers for tests that watch real processes: the toy server (`harness/pytest/toy_server.py`,
run as a script) and a bounded wait for a process to exit."""

from __future__ import annotations

from pathlib import Path

import psutil

from harness.runtime.poll import WaitTimeout, wait_until

TOY = str(Path(__file__).with_name("toy_server.py"))


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether the process has exited (a zombie counts) within a bounded wait: a kill is
    delivered asynchronously, so the state right after it can still say running."""

    def exited() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    try:
        return wait_until(exited, what=f"process {pid} to exit", timeout=within, cap=0.01)
    except WaitTimeout:
        return False
