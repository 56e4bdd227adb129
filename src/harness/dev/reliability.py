"""The reliability session (`nox -s reliability`): the chaos, robustness and security tests of the
unit and mock tiers, several runs in a row. Every run goes on after a failed one, and writes its own
JUnit XML and failure logs (`reliability-<run>`); the session fails at the end, naming the runs."""

from __future__ import annotations

from typing import Any

from harness.dev import nox_support

MARKERS = "chaos or robustness or security"
RUNS = 3
TIERS = ("tests/unit", "tests/mock")


def run(session: Any, runs: int = RUNS) -> None:
    """`runs` runs of the reliability tests; then fail if any failed."""
    failed = []
    for number in range(1, runs + 1):
        session.log(f"# reliability run {number} of {runs}")
        try:
            nox_support.pytest(session, f"reliability-{number}", *TIERS, "-m", MARKERS)
        except nox_support.command_failed():
            failed.append(number)
    if failed:
        which = ", ".join(map(str, failed))
        session.error(f"{len(failed)} of {runs} runs failed (run {which})")
