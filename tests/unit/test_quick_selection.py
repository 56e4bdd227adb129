"""The dev loop's selection (`--quick`, harness.pytest.fixtures): tests marked slow are left out,
one case of each parametrized test is kept and at most two tests of each module; with `--lf`
the failures of an earlier full run come back even when the selection would leave them out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.pytest import fixtures
from harness.runtime.owners import RUN_OWNER_ENV

pytest_plugins = ["pytester"]


@dataclass(frozen=True)
class Item:
    """What the selection reads of a collected test."""

    nodeid: str
    markers: tuple[str, ...] = ()

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


@dataclass
class Config:
    options: dict[str, bool] = field(default_factory=dict)
    failed: dict[str, bool] = field(default_factory=dict)

    @property
    def cache(self) -> Config:
        return self

    def get(self, key: str, default: Any) -> Any:
        return self.failed if key == "cache/lastfailed" else default

    def getoption(self, name: str) -> bool:
        return self.options.get(name, False)


def items(module: str, *tests: str, slow: tuple[str, ...] = ()) -> list[Item]:
    return [Item(f"{module}::{t}", ("slow",) if t in slow else ()) for t in tests]


CASES = {
    # name: (items, what the selection must satisfy: (tests of the module kept, ...))
    "a slow test is never kept": (items("m.py", "test_a", "test_slow", slow=("test_slow",)), 1),
    "two tests a module at most": (items("m.py", "test_a", "test_b", "test_c", "test_d"), 2),
    "one case of a parametrized test": (items("m.py", "test_p[1]", "test_p[2]", "test_p[3]"), 1),
    "cases count as one test": (items("m.py", "test_p[1]", "test_p[2]", "test_q"), 2),
}


@pytest.mark.parametrize("name", CASES)
def test_the_quick_selection(name: str) -> None:
    collected, kept_count = CASES[name]
    kept = fixtures.quick_selection(list(collected))  # type: ignore[arg-type]
    assert len(kept) == kept_count
    assert not any(item.get_closest_marker("slow") for item in kept)
    names = [item.nodeid.split("[")[0] for item in kept]
    assert len(names) == len(set(names)), "one case per test"


RERUNS = {
    # options: failed tests brought back (m.py::test_c failed last time)
    "no option": ({}, set()),
    "--lf": ({"lf": True}, {"m.py::test_c"}),
    "--ff": ({"failedfirst": True}, {"m.py::test_c"}),
}


@pytest.mark.parametrize("name", RERUNS)
def test_last_failed_tests_come_back_only_when_asked(name: str) -> None:
    options, expected = RERUNS[name]
    config = Config(options, {"m.py::test_c": True, "gone.py::test_x": True})
    collected = items("m.py", "test_a", "test_b", "test_c")
    rerun = fixtures.asked_to_rerun(config, collected)  # type: ignore[arg-type]
    assert {item.nodeid for item in rerun} == expected


@pytest.mark.slow
def test_quick_lf_reruns_a_failure_of_the_full_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest's own last-failed filter runs after the selection: the failure must survive it."""
    pytester.makepyfile(
        test_m="""
import os

def test_a():
    pass

def test_b():
    pass

def test_c():
    pass

def test_fails_when_asked():
    assert "FAIL_NOW" not in os.environ
"""
    )
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")

    def ran(*args: str) -> list[str]:
        out = pytester.runpytest_subprocess("-p", "harness.pytest.fixtures", "-v", *args)
        return re.findall(r"^(test_m\.py::\S+) (?:PASSED|FAILED)", out.stdout.str(), re.M)

    tests = items("test_m.py", "test_a", "test_b", "test_c", "test_fails_when_asked")
    quick = {item.nodeid for item in fixtures.quick_selection(tests)}  # type: ignore[arg-type]
    assert "test_m.py::test_fails_when_asked" not in quick, "the case needs a failure left out"
    # The nested runs are a developer's own runs, not part of this one.
    monkeypatch.delenv(RUN_OWNER_ENV, raising=False)
    monkeypatch.setenv("FAIL_NOW", "1")
    assert "test_m.py::test_fails_when_asked" in ran("-p", "no:xdist")
    assert ran("-p", "no:xdist", "--quick", "--lf") == ["test_m.py::test_fails_when_asked"]
