"""Processes the harness did not start, in one place: the strangers tests start on purpose (a
process holding a PID a record names, an owner that dies, a user's `invoke` that is sent a
signal), and the signals tests send on purpose to crash a server or interrupt a run.

Every stranger is ended by its PID when the test is over (SIGKILL, then reaped), whatever the
test did; nothing here looks for a process by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

# A stranger that does nothing for a minute: long enough for any test, short if one leaks.
SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")


class Strangers:
    """Foreign processes a test starts; `close()` ends each one still running."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, *argv: str, **popen_args: Any) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(list(argv or SLEEPER), **popen_args)
        self._started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self._started):
            end(process)
        self._started.clear()

    def __enter__(self) -> Strangers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextlib.contextmanager
def stranger(*argv: str, **popen_args: Any) -> Iterator[subprocess.Popen[bytes]]:
    """One foreign process (by default SLEEPER), ended by its PID when the block is left."""
    with Strangers() as strangers:
        yield strangers.start(*argv, **popen_args)


def end(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a stranger by its PID, unless it has exited already, and reap it."""
    if process.poll() is None:
        kill(process.pid)
    process.wait()


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Send a signal on purpose, by PID: a server crashes, a user interrupts a run. A process
    that is gone already is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def exited_pid() -> int:
    """The PID of a process that ran and is over (reaped): the owner of a finished run."""
    with stranger(sys.executable, "-c", "pass") as finished:
        finished.wait()
    return finished.pid
