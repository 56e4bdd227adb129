"""Nox sessions: the test tiers, coverage, lint and the Rust checks, each in its own uv env.

`nox -s mock` runs once, on the interpreter running nox; `nox -s mock -P 3.12` picks another.
Environments are reused and synced from uv.lock, so a warm session starts in about a second.
Every test session writes JUnit XML to reports/ and, when it fails, copies the stack's server
logs to reports/failure-logs/<session>/. The work is done in `harness.dev`.
"""

from __future__ import annotations

import os

import nox

from harness.dev import coverage as coverage_support
from harness.dev import nox_support
from harness.dev import reliability as reliability_support
from harness.dev import shards as shards_support
from harness.dev.nox_support import THIS_PYTHON, prepare_stack, pytest, sync

PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"), max_version="3.13")

# The one thing loading this file does besides reading constants: nox finds a `-P 3.12`
# interpreter on PATH only (pyenv's shims fail for versions not selected globally), and it
# offers no hook between reading its options and looking for interpreters. So pyenv's
# installed interpreters of PYTHONS go on PATH here; nothing is downloaded.
nox_support.expose_pyenv_interpreters(PYTHONS)

nox.options.default_venv_backend = "uv"
nox.options.download_python = "never"  # the `uv sync` of every session says so too
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = "CI" in os.environ
nox.options.sessions = ["lint", "rust", "unit_full", "mock_full"]


@nox.session(python=THIS_PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tier, the dev loop: the harness and the mock's fidelity, without the slow tests."""
    sync(session, "test", "bench")
    pytest(session, "unit", "tests/unit", *nox_support.UNIT_QUICK)


@nox.session(python=THIS_PYTHON, name="unit_full")
def unit_full(session: nox.Session) -> None:
    """Unit tier, all of it: the dev loop and the slow tests (chaos kills, nested runs, plots)."""
    sync(session, "test", "bench")
    # The unit tier needs nothing built: the chaos cases that run the real stack wait for the
    # sessions that build the proxy first (reliability runs them three times, coverage once).
    pytest(session, "unit_full", "tests/unit", *nox_support.UNIT_FULL)


@nox.session(python=THIS_PYTHON)
def mock(session: nox.Session) -> None:
    """Mock tier, the dev loop: every capability once, without the tests marked slow."""
    sync(session, "test")
    prepare_stack(session)
    pytest(session, "mock", "tests/mock", *nox_support.QUICK_MOCK)


@nox.session(python=THIS_PYTHON, name="mock_full")
def mock_full(session: nox.Session) -> None:
    """Mock tier, all of it: the real proxy against the mock upstreams, through the openai SDK."""
    sync(session, "test")
    prepare_stack(session)
    pytest(session, "mock_full", "tests/mock")


@nox.session(python=THIS_PYTHON)
def integration(session: nox.Session) -> None:
    """Integration tier: against a real endpoint when OPENAI_API_KEY is set (skipped otherwise)."""
    sync(session, "test")
    prepare_stack(session)
    pytest(session, "integration", "tests/integration")


@nox.session(python=THIS_PYTHON, default=False)
def fuzz(session: nox.Session) -> None:
    """The full fuzz run (over 10,000 cases) of the proxy's request handling."""
    sync(session, "test")
    prepare_stack(session)
    session.env.setdefault("SWITCHYARD_FUZZ_EXAMPLES", "1500")
    pytest(session, "fuzz", "tests/mock", "-k", "fuzz or schemathesis", "-p", "no:cacheprovider")


@nox.session(python=THIS_PYTHON, default=False)
def reliability(session: nox.Session) -> None:
    """The chaos, robustness and security tests of the unit and mock tiers, three runs in a row."""
    sync(session, "test")
    prepare_stack(session)
    reliability_support.run(session)


@nox.session(python=THIS_PYTHON, default=False)
def soak(session: nox.Session) -> None:
    """The soak run (scripts/soak.py; arguments after -- go to it)."""
    sync(session, "bench")
    prepare_stack(session)
    session.run("python", "scripts/soak.py", *session.posargs)  # builds the bench tools too


@nox.session(python=THIS_PYTHON, default=False)
def coverage(session: nox.Session) -> None:
    """Unit and mock tiers (and cargo test) measuring the harness and an instrumented proxy.

    coverage.py follows pytest, its xdist workers and the servers it starts; the proxy is a
    cargo-llvm-cov build of its own. Reports go to reports/coverage/; the session fails when a
    test fails or either language is below its threshold (see harness.dev.coverage).
    """
    sync(session, "test", "coverage")
    prepare_stack(session)
    coverage_support.measure(session, "tests/unit", "tests/mock")


@nox.session(python=THIS_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark: switchyard against its upstream (scripts/bench.py; arguments after -- go
    to it, e.g. `nox -s bench -- --quick`)."""
    sync(session, "bench")
    prepare_stack(session)
    session.run("python", "scripts/bench.py", *session.posargs)  # builds the bench tools too


@nox.session(python=THIS_PYTHON, default=False)
def durations(session: nox.Session) -> None:
    """Refresh .test_durations, which CI's shards split by, from the unit and mock tiers, whole.

    pytest-split's --store-durations, under xdist like the other sessions; then the table of
    what each more runner buys (harness.dev.shards). Arguments after -- narrow the run, and the
    file then keeps its other entries.
    """
    sync(session, "test")
    prepare_stack(session)
    shards_support.refresh(session)


@nox.session(python=THIS_PYTHON, default=False)
def shards(session: nox.Session) -> None:
    """What one more CI runner buys: each shard's predicted time, from .test_durations.

    For 1 to 6 runners, by pytest-split's own algorithm (CI's); arguments after -- go to
    `python -m harness.dev.shards` (--max-runners, --tier, --path).
    """
    sync(session, "test")
    session.run("python", "-m", "harness.dev.shards", *session.posargs)


@nox.session(python=THIS_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check), mypy, and actionlint on the CI workflow."""
    sync(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    nox_support.actionlint(session)


@nox.session(python=False)
def rust(session: nox.Session) -> None:
    """cargo fmt --check, cargo clippy -D warnings, cargo test (the whole workspace)."""
    nox_support.rust_checks(session)
