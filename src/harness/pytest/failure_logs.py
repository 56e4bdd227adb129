"""The server logs of a failed test run, gathered in one directory (CI uploads it).

The nox test sessions load this module as a pytest plugin (`-p harness.pytest.failure_logs`)
and name the destination in SWITCHYARD_FAILURE_LOGS, e.g. `reports/failure-logs/mock`. The
destination is emptied when the run starts. When the run fails, the controller copies there the
logs of the stacks the run used: its own stack and the private stacks its tests started
(`.switchyard/logs/pytest-<pid>[-<label>-<hex>]/`), or the stack it reused. It does so last, after
the run's stack is stopped, so the copies end with the servers' shutdown.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from harness.pytest import stacks as testing
from harness.runtime import paths, stack

# Where to copy the logs; the nox sessions set it (`harness.dev.nox_support`).
DESTINATION_ENV = "SWITCHYARD_FAILURE_LOGS"

# Exit codes that mean the run failed (not "no tests collected", not a usage error).
FAILED_EXIT_CODES = {
    pytest.ExitCode.TESTS_FAILED,
    pytest.ExitCode.INTERRUPTED,
    pytest.ExitCode.INTERNAL_ERROR,
}


def run_log_dirs(logs_dir: Path, run_id: str) -> list[Path]:
    """The log directories of one test run: `<run_id>` and its private stacks'
    `<run_id>-<label>-<hex>`, not those of another run whose id merely starts the same."""
    if not logs_dir.is_dir():
        return []
    return sorted(
        entry
        for entry in logs_dir.iterdir()
        if entry.is_dir() and (entry.name == run_id or entry.name.startswith(f"{run_id}-"))
    )


def used_log_dirs(environ: Mapping[str, str], run_id: str) -> list[Path]:
    """The log directories of the stacks a run used, following `testing.acquire_stack`'s
    order: an external proxy has none here; a named stack; the run's own stacks; else the
    `invoke up` stack it reused."""
    logs_dir = paths.logs_dir()
    if environ.get("SWITCHYARD_BASE_URL"):
        return []
    named = environ.get("SWITCHYARD_STACK")
    if named:
        return [d for d in [logs_dir / named] if d.is_dir()]
    own = run_log_dirs(logs_dir, run_id)
    if any(d.name == run_id for d in own) or environ.get("SWITCHYARD_REUSE", "1") == "0":
        return own
    default = logs_dir / stack.DEFAULT_STACK
    return [*own, default] if default.is_dir() else own


def collect(sources: list[Path], destination: Path) -> list[Path]:
    """Copy each log directory to `destination/<its name>/`; returns the copies. A log that
    vanishes meanwhile (pruned by another run) is skipped."""
    copies = []
    for source in sources:
        target = destination / source.name
        try:
            shutil.copytree(source, target, dirs_exist_ok=True)
        except (FileNotFoundError, shutil.Error):
            if not target.exists():
                continue
        copies.append(target)
    return copies


def _destination() -> Path | None:
    value = os.environ.get(DESTINATION_ENV)
    return Path(value) if value else None


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    destination = _destination()
    if destination is not None and _is_controller(config):
        shutil.rmtree(destination, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    destination = _destination()
    if destination is None or not _is_controller(session.config):
        return
    if exitstatus not in FAILED_EXIT_CODES:
        return
    copies = collect(used_log_dirs(os.environ, testing.run_stack_id()), destination)
    session.config.stash[_COPIES] = copies


_COPIES = pytest.StashKey[list[Path]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    copies = terminalreporter.config.stash.get(_COPIES, None)
    destination = _destination()
    if copies is None or destination is None:
        return
    if copies:
        terminalreporter.write_line(
            f"server logs of {len(copies)} stack(s) copied to {destination}"
        )
    else:
        terminalreporter.write_line("no server logs to copy: the run started no stack")
