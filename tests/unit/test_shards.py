"""CI's shards (`harness.dev.shards`): each shard's predicted time by pytest-split's algorithms,
the table of what one more runner buys, the durations file's refresh, and the workflow's
splits agreeing with its shards."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.dev import nox_support, shards

REPO = Path(__file__).resolve().parents[2]


# Node ids to seconds, in the order given (the chunking algorithm reads that order).
def durations(*seconds: float) -> dict[str, float]:
    return {f"tests/mock/test_{index}.py::test": value for index, value in enumerate(seconds)}


SHARD_CASES = [
    # (durations, runners, algorithm, each shard's seconds in group order)
    (durations(3, 2, 1), 1, "least_duration", [6.0]),
    # Largest first onto the least loaded: 3 | 2 + 1.
    (durations(3, 2, 1), 2, "least_duration", [3.0, 3.0]),
    (durations(3, 2, 1), 3, "least_duration", [3.0, 2.0, 1.0]),
    # More runners than tests: a shard gets nothing.
    (durations(3, 2, 1), 4, "least_duration", [3.0, 2.0, 1.0, 0.0]),
    # Greedy, not optimal: 5 + 4 | 3 + 3 + 3 would be 9 | 9; it gives 5 + 3 | 4 + 3 + 3.
    (durations(5, 4, 3, 3, 3), 2, "least_duration", [8.0, 10.0]),
    # Contiguous chunks of about the total over runners each: 1 + 4 | 1, where
    # least_duration gives 4 | 1 + 1.
    (durations(1, 4, 1), 2, "duration_based_chunks", [5.0, 1.0]),
    (durations(1, 4, 1), 2, "least_duration", [4.0, 2.0]),
]


@pytest.mark.parametrize(("recorded", "runners", "algorithm", "expected"), SHARD_CASES)
def test_shard_times_follow_pytest_splits_algorithm(
    recorded: dict[str, float], runners: int, algorithm: str, expected: list[float]
) -> None:
    assert shards.shard_times(recorded, runners, algorithm) == pytest.approx(expected)


@pytest.mark.parametrize("runners", [0, -1])
def test_shard_times_need_a_runner(runners: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shards.shard_times(durations(1), runners)


TABLE_CASES = [
    # (durations, max runners, [(slowest, saved, shards largest first) per row])
    (
        durations(3, 2, 1),
        3,
        [(6.0, 0.0, (6.0,)), (3.0, 3.0, (3.0, 3.0)), (3.0, 0.0, (3.0, 2.0, 1.0))],
    ),
    # One long test bounds every shard: the second runner buys 1 s, the third nothing.
    (
        durations(10, 1),
        3,
        [(11.0, 0.0, (11.0,)), (10.0, 1.0, (10.0, 1.0)), (10.0, 0.0, (10.0, 1.0, 0.0))],
    ),
]


@pytest.mark.parametrize(("recorded", "max_runners", "rows"), TABLE_CASES)
def test_table_has_a_row_per_runner_count(
    recorded: dict[str, float], max_runners: int, rows: list[tuple[float, float, tuple[float, ...]]]
) -> None:
    table = shards.table(recorded, max_runners)
    assert [row.runners for row in table] == list(range(1, max_runners + 1))
    # Sums of whole seconds: exact in floating point.
    assert [(row.slowest, row.saved, row.shards) for row in table] == rows


def test_markdown_shows_the_slowest_shard_and_what_each_runner_saved() -> None:
    text = shards.markdown(shards.table(durations(3, 2, 1), 2))
    assert text.splitlines() == [
        "| runners | slowest shard | one more runner saves | vs one runner | each shard |",
        "| ---: | ---: | ---: | ---: | --- |",
        "| 1 | 6.0 s |  | 1.00x | 6.0 |",
        "| 2 | 3.0 s | 3.0 s | 2.00x | 3.0, 3.0 |",
    ]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("tests/mock", {"tests/mock/test_a.py::t"}),
        ("tests/mock/", {"tests/mock/test_a.py::t"}),
        ("tests/unit", {"tests/unit/test_b.py::t"}),
        ("tests/integration", set()),
    ],
)
def test_tier_selects_its_folder_only(folder: str, expected: set[str]) -> None:
    recorded = {"tests/mock/test_a.py::t": 1.0, "tests/unit/test_b.py::t": 2.0}
    recorded["tests/mockery/test_c.py::t"] = 3.0  # shares a prefix, not the folder
    assert set(shards.tier(recorded, folder)) == expected


def test_report_has_a_section_per_tier() -> None:
    recorded = {"tests/unit/test_a.py::t": 2.0, "tests/unit/test_a.py::u": 0.5}
    text = shards.report(recorded, ("tests/unit", "tests/mock"), max_runners=2)
    unit, mock = text.split("\n\n### ")
    assert unit.startswith("### tests/unit\n\n2 test ids, 2.5 s in all; the longest, 2.0 s")
    assert "| 2 | 2.0 s | 0.5 s | 1.25x | 2.0, 0.5 |" in unit
    assert mock == "tests/mock\n\nno durations recorded"


def test_load_reads_pytest_splits_format(tmp_path: Path) -> None:
    path = tmp_path / "durations"
    path.write_text(json.dumps({"tests/unit/test_a.py::t": 1.5}))
    assert shards.load(path) == {"tests/unit/test_a.py::t": 1.5}
    path.write_text("[]")
    with pytest.raises(ValueError, match="JSON object"):
        shards.load(path)


class FakeSession:
    def __init__(self, posargs: list[str]) -> None:
        self.posargs = posargs
        self.python = "3.12"
        self.runs: list[tuple[str, ...]] = []
        self.logged: list[str] = []

    def run(self, *args: str, **_kwargs: Any) -> None:
        self.runs.append(args)

    def log(self, message: str) -> None:
        self.logged.append(message)


@pytest.mark.parametrize(
    ("posargs", "cleans", "paths"),
    [
        ([], True, list(shards.TIERS)),
        # Narrowed: the other tests' entries stay.
        (["tests/mock/test_chat.py"], False, ["tests/mock/test_chat.py"]),
        (["-k", "stream"], False, list(shards.TIERS)),
    ],
)
def test_refresh_cleans_the_file_only_on_a_whole_run(
    tmp_path: Path, posargs: list[str], cleans: bool, paths: list[str]
) -> None:
    path = tmp_path / "durations"
    path.write_text(json.dumps({"tests/unit/test_a.py::t": 1.0}))
    session = FakeSession(posargs)
    shards.refresh(session, path)
    (args,) = session.runs
    assert [arg for arg in args if arg.startswith("tests/")] == paths
    assert "--store-durations" in args
    assert f"--durations-path={path}" in args
    assert ("--clean-durations" in args) is cleans
    assert args[-1] == "--durations=10"  # nox_support.pytest's own, after -n auto
    assert "| 1 | 1.0 s |" in session.logged[-1]


@pytest.mark.parametrize(
    "posargs",
    [
        ["--splits=3", "--group=2", "--splitting-algorithm=least_duration"],
        ["--splits", "3", "--group", "2"],
    ],
)
def test_split_options_keep_the_sessions_paths_and_workers(posargs: list[str]) -> None:
    args = nox_support.pytest_arguments(["tests/mock"], posargs)
    assert args == ["tests/mock", *posargs, "-n", "auto"]


def test_committed_durations_cover_the_sharded_tiers_only() -> None:
    recorded = shards.load(REPO / shards.DURATIONS_FILE)
    assert all(seconds >= 0 for seconds in recorded.values())
    assert {"/".join(nodeid.split("/")[:2]) for nodeid in recorded} == set(shards.TIERS)


def test_the_workflows_splits_match_its_shards() -> None:
    """Each `full` job runs group K of --splits=N: N must be the number of shards, or a group is
    never run (fewer shards) or runs nothing (more); and the algorithm must be the table's."""
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    job = workflow["jobs"]["full"]
    groups = job["strategy"]["matrix"]["shard"]
    (command,) = [step["run"] for step in job["steps"] if "--splits" in step.get("run", "")]
    assert re.findall(r"--splits=(\d+)", command) == [str(len(groups))]
    assert groups == list(range(1, len(groups) + 1))
    assert "--group=${{ matrix.shard }} " in command
    assert re.findall(r"--splitting-algorithm=(\w+)", command) == [shards.ALGORITHM]
    assert (
        job["strategy"]["matrix"]["python"]
        == workflow["jobs"]["fast"]["strategy"]["matrix"]["python"]
    )
