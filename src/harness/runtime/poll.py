"""The one poller: every "wait until" in the harness and its tests, with a deadline and a
backoff that starts in milliseconds (a server is usually ready long before a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition was still false at the deadline; the message names what was awaited."""


def backoff_delays(first: float = 0.005, factor: float = 2.0, cap: float = 0.25) -> Iterator[float]:
    """Delays between polls: start in milliseconds, grow, stay capped."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


def wait_until(
    condition: Callable[[], T],
    *,
    what: str,
    timeout: float,
    first: float = 0.005,
    cap: float = 0.25,
) -> T:
    """Call `condition` until it returns something truthy, and return that; raise WaitTimeout
    naming `what` once `timeout` seconds have passed. The last call is made at the deadline."""
    deadline = time.monotonic() + timeout
    delays = backoff_delays(first=first, cap=cap)
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(min(next(delays), remaining))
