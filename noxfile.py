"""Nox sessions: the test tiers, coverage, lint and the Rust checks, each in its own uv env.

`nox -s mock` runs once, on the interpreter running nox; `nox -s mock -P 3.12` picks another.
Environments are reused and synced from uv.lock, so a warm session starts in about a second.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

from harness import nox_support

ROOT = Path(__file__).parent
PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"), max_version="3.13")
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

nox_support.expose_pyenv_interpreters(PYTHONS)
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = "CI" in os.environ
nox.options.sessions = ["lint", "rust", "unit", "mock"]


def _sync(session: nox.Session, *groups: str) -> None:
    """Install the project and the given dependency groups from the lock, nothing else."""
    args = ["uv", "sync", "--frozen", "--no-default-groups", "--inexact"]
    for group in groups:
        args += ["--group", group]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})


def _pytest(session: nox.Session, tier: str, *extra: str) -> None:
    reports = ROOT / "reports"
    reports.mkdir(exist_ok=True)
    python = session.python or THIS_PYTHON
    args = session.posargs or ["-n", "auto"]
    session.run(
        "pytest",
        f"tests/{tier}",
        f"--junitxml={reports / f'junit-{tier}-py{python}.xml'}",
        "--durations=10",
        *extra,
        *args,
    )


@nox.session(python=THIS_PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tier: the harness and the mock upstream's fidelity to the openai SDK."""
    _sync(session, "test", "bench")
    _pytest(session, "unit")


@nox.session(python=THIS_PYTHON)
def mock(session: nox.Session) -> None:
    """Mock tier: the real proxy against the mock upstreams, through the openai SDK."""
    _sync(session, "test")
    session.log("# building the proxy when stale, and provisioning redis-server")
    nox_support.prepare_stack(session)
    _pytest(session, "mock")


@nox.session(python=THIS_PYTHON)
def integration(session: nox.Session) -> None:
    """Integration tier: against a real endpoint when OPENAI_API_KEY is set (skipped otherwise)."""
    _sync(session, "test")
    nox_support.prepare_stack(session)
    _pytest(session, "integration")


@nox.session(python=THIS_PYTHON, default=False)
def fuzz(session: nox.Session) -> None:
    """The full fuzz run (over 10,000 cases) of the proxy's request handling."""
    _sync(session, "test")
    nox_support.prepare_stack(session)
    session.env.setdefault("SWITCHYARD_FUZZ_EXAMPLES", "1500")
    _pytest(session, "mock", "-k", "fuzz or schemathesis", "-p", "no:cacheprovider")


@nox.session(python=THIS_PYTHON, default=False)
def coverage(session: nox.Session) -> None:
    """Unit and mock tiers under coverage.py, across xdist workers and started servers."""
    _sync(session, "test", "coverage")
    nox_support.prepare_stack(session)
    session.run("coverage", "erase")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        "tests/unit",
        "tests/mock",
        *(session.posargs or ["-n", "auto"]),
    )
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report")
    session.run("coverage", "html")
    session.run("coverage", "xml")


@nox.session(python=THIS_PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The benchmark: switchyard against its upstream (scripts/bench.py; arguments after -- go
    to it, e.g. `nox -s bench -- --quick`)."""
    _sync(session, "bench")
    nox_support.prepare_stack(session)
    session.run("python", "scripts/bench.py", "--no-build", *session.posargs)


@nox.session(python=THIS_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy."""
    _sync(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=False)
def rust(session: nox.Session) -> None:
    """cargo fmt --check, cargo clippy -D warnings, cargo test."""
    manifest = ["--manifest-path", "proxy/Cargo.toml"]
    session.run("cargo", "fmt", *manifest, "--check", external=True)
    session.run(
        "cargo", "clippy", *manifest, "--all-targets", "--", "-D", "warnings", external=True
    )
    session.run("cargo", "test", *manifest, external=True)
