"""Helpers for noxfile.py: interpreter discovery, stack preparation, test reports, actionlint."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.runtime import paths, stack, toolchain

WORKFLOWS = (".github/workflows/ci.yml",)
# Where the `harness.pytest.failure_logs` pytest plugin copies a failed run's server logs.
FAILURE_LOGS_ENV = "SWITCHYARD_FAILURE_LOGS"


def expose_pyenv_interpreters(versions: Iterable[str]) -> None:
    """Put pyenv's installed interpreters on PATH.

    pyenv's shims fail for versions that are not selected globally, so neither nox nor uv can
    find them through the shims; the versions' own bin directories work. Nothing is downloaded.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = []
    for version in versions:
        candidates = glob.glob(str(root / "versions" / f"{version}.*" / "bin"))
        found += sorted(candidates, key=_patch_level)[-1:]
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


def _patch_level(bin_dir: str) -> tuple[int, ...]:
    """3.12.10 sorts after 3.12.9: version parts compare as numbers, not text."""
    name = Path(bin_dir).parent.name
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def prepare_stack(session: Any) -> None:
    """Build what the stack builds (cargo is incremental) and make sure redis-server exists."""
    config = stack.load().config
    toolchain.build_services(config, session.log)
    toolchain.ensure_redis(session.log)


def pytest_reporting(report: str, python: str) -> tuple[list[str], dict[str, str]]:
    """pytest arguments and environment for a test session's reports: JUnit XML in
    `reports/junit-<report>-py<python>.xml`, and on failure the server logs of the stacks the
    run used in `reports/failure-logs/<report>/` (the `harness.pytest.failure_logs` plugin)."""
    reports = paths.reports_dir()
    reports.mkdir(parents=True, exist_ok=True)
    args = [
        f"--junitxml={reports / f'junit-{report}-py{python}.xml'}",
        "-p",
        "harness.pytest.failure_logs",
    ]
    env = {FAILURE_LOGS_ENV: str(reports / "failure-logs" / report)}
    return args, env


def actionlint(session: Any) -> None:
    """actionlint (installed at its pinned version when missing) on the CI workflows."""
    binary = toolchain.ensure_actionlint(session.log)
    session.run(binary, *WORKFLOWS, external=True)
