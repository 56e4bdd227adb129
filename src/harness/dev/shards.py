"""CI's shards: the durations file pytest-split splits by (`.test_durations`), its refresh
(`nox -s durations`), and what one more runner buys (`nox -s shards`, or
`python -m harness.dev.shards`).

CI passes `--splits N --group K` (and the algorithm) after `--`, so each of N runners runs one
group of the session's own selection: pytest-split deselects last (its hook is `trylast`), after
`-m`, `-k` and the harness plugin's `--quick`, and every xdist worker computes the same groups.
The predictions here call pytest-split's own algorithm on the file's tests, so they are the
groups CI gets, and their times the "estimated duration" each runner prints; but for a node id
collected more than once (schemathesis collects its one test four times), which the file holds
once, at the items' total, and pytest-split then counts at that total for each item.

Durations are each test's setup, call and teardown, measured under xdist: a shard's time is
its tests' sum, and a runner with W workers takes about that over W, plus its own start.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harness.dev import nox_support

# pytest-split's default path (the working directory's `.test_durations`): nox and CI run pytest
# from the repository root, so no run needs `--durations-path`.
DURATIONS_FILE = Path(".test_durations")
# The tiers CI shards, and the file covers: each one whole, slow tests included.
TIERS = ("tests/unit", "tests/mock")
# Largest-first onto the least loaded runner: better balanced than the default (contiguous
# chunks), and each group keeps the collection's order.
ALGORITHM = "least_duration"
SPLIT_OPTIONS = ("--splitting-algorithm", ALGORITHM)
MAX_RUNNERS = 6


class _Test(NamedTuple):
    """What pytest-split's algorithms read of a pytest item: its node id."""

    nodeid: str


@dataclass(frozen=True)
class Row:
    """One line of the table: `runners` shards, each shard's predicted seconds (largest
    first), and what the last runner added saved on the slowest shard."""

    runners: int
    shards: tuple[float, ...]
    saved: float

    @property
    def slowest(self) -> float:
        return self.shards[0]


def load(path: Path = DURATIONS_FILE) -> dict[str, float]:
    """The durations file: node id to seconds (setup, call and teardown together)."""
    durations = json.loads(path.read_text())
    if not isinstance(durations, dict):
        raise ValueError(f"{path}: expected a JSON object of node ids to seconds")
    return {str(nodeid): float(seconds) for nodeid, seconds in durations.items()}


def tier(durations: Mapping[str, float], folder: str) -> dict[str, float]:
    """The durations of the tests under `folder` (e.g. `tests/mock`)."""
    prefix = folder.rstrip("/") + "/"
    return {nodeid: seconds for nodeid, seconds in durations.items() if nodeid.startswith(prefix)}


def shard_times(
    durations: Mapping[str, float], runners: int, algorithm: str = ALGORITHM
) -> list[float]:
    """Each shard's predicted seconds when pytest-split's `algorithm` splits these tests across
    `runners`. With `least_duration` the sums do not depend on the tests' order (it sorts them
    itself); the contiguous `duration_based_chunks` would see the file's order (by node id),
    not the collection's."""
    from pytest_split.algorithms import Algorithms

    if runners < 1:
        raise ValueError(f"runners must be at least 1, not {runners}")
    tests: list[Any] = [_Test(nodeid) for nodeid in durations]
    groups = Algorithms[algorithm].value(runners, tests, dict(durations))
    return [group.duration for group in groups]


def table(
    durations: Mapping[str, float], max_runners: int = MAX_RUNNERS, algorithm: str = ALGORITHM
) -> list[Row]:
    """One row per number of runners, 1 to `max_runners`."""
    rows: list[Row] = []
    for runners in range(1, max_runners + 1):
        shards = tuple(sorted(shard_times(durations, runners, algorithm), reverse=True))
        saved = rows[-1].slowest - shards[0] if rows else 0.0
        rows.append(Row(runners, shards, saved))
    return rows


def markdown(rows: Sequence[Row]) -> str:
    """The table in Markdown: the slowest shard is the job's wall time, give or take each
    runner's start."""
    lines = [
        "| runners | slowest shard | one more runner saves | vs one runner | each shard |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        saved = "" if row.runners == 1 else f"{row.saved:.1f} s"
        speedup = rows[0].slowest / row.slowest if row.slowest else 1.0
        shards = ", ".join(f"{seconds:.1f}" for seconds in row.shards)
        lines.append(
            f"| {row.runners} | {row.slowest:.1f} s | {saved} | {speedup:.2f}x | {shards} |"
        )
    return "\n".join(lines)


def report(
    durations: Mapping[str, float],
    tiers: Iterable[str] = TIERS,
    max_runners: int = MAX_RUNNERS,
    algorithm: str = ALGORITHM,
) -> str:
    """A section per tier: its tests, their total and longest, and the table."""
    sections = []
    for folder in tiers:
        selected = tier(durations, folder)
        if not selected:
            sections.append(f"### {folder}\n\nno durations recorded")
            continue
        longest = max(selected, key=selected.__getitem__)
        sections.append(
            f"### {folder}\n\n"
            f"{len(selected)} test ids, {sum(selected.values()):.1f} s in all; the longest, "
            f"{selected[longest]:.1f} s (`{longest}`), bounds any shard from below.\n\n"
            + markdown(table(selected, max_runners, algorithm))
        )
    return "\n\n".join(sections)


def refresh(session: Any, path: Path = DURATIONS_FILE) -> None:
    """Run both tiers whole with `--store-durations`, then print the table.

    The file is rewritten with only this run's tests (`--clean-durations`), so tests that are
    gone leave it; arguments after `--` narrow the run, and then the other entries are kept.
    pytest-split stores under xdist: the controller gathers every worker's reports and writes
    the file once they have all finished."""
    store = ["--store-durations", f"--durations-path={path}"]
    if not session.posargs:
        store.append("--clean-durations")
    nox_support.pytest(session, "durations", *TIERS, *store)
    session.log(f"stored {path}; what each more runner buys:\n\n{report(load(path))}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m harness.dev.shards",
        description="What one more CI runner buys: each shard's predicted seconds for 1 to N "
        "runners, from the durations file, by pytest-split's own algorithm.",
    )
    parser.add_argument("--path", type=Path, default=DURATIONS_FILE, help="the durations file")
    parser.add_argument("--max-runners", type=int, default=MAX_RUNNERS, metavar="N")
    parser.add_argument("--algorithm", default=ALGORITHM, help="pytest-split's algorithm")
    parser.add_argument(
        "--tier", action="append", dest="tiers", metavar="FOLDER", help=f"default: {TIERS}"
    )
    args = parser.parse_args(argv)
    print(report(load(args.path), args.tiers or TIERS, args.max_runners, args.algorithm))


if __name__ == "__main__":
    main()
