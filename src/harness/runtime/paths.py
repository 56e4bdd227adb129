"""Where things are: the repository, the stack config, and the state directory."""

from __future__ import annotations

import os
from pathlib import Path

# src/harness/runtime/paths.py -> the repository root (the project is installed editable).
_REPO_ROOT = Path(__file__).resolve().parents[3]


def root() -> Path:
    return Path(os.environ.get("SWITCHYARD_ROOT", _REPO_ROOT))


def stack_config() -> Path:
    return Path(os.environ.get("SWITCHYARD_STACK_CONFIG", root() / "config" / "stack.toml"))


def state_dir() -> Path:
    """PID files, rendered configs and logs: gitignored, removed by `invoke clean`."""
    return Path(os.environ.get("SWITCHYARD_STATE_DIR", root() / ".switchyard"))


def stacks_dir() -> Path:
    return state_dir() / "stacks"


def logs_dir() -> Path:
    return state_dir() / "logs"


def reports_dir() -> Path:
    return root() / "reports"
