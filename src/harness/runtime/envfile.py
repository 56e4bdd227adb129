"""The keys a user keeps in a `.env` file at the repository root, as the integration suites of
the tools we learn from do: the integration tier and `invoke setup-and-test` read
OPENAI_API_KEY, OPENAI_BASE_URL and SWITCHYARD_INTEGRATION_MODEL from it when it is there.

The environment wins over the file, nothing else in the file is read, and no value is ever
printed: callers get the names of the keys taken, for a line that says where they came from.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from harness.runtime import paths

KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SWITCHYARD_INTEGRATION_MODEL")


def env_file() -> Path:
    return paths.root() / ".env"


def load_keys(path: Path | None = None) -> list[str]:
    """Set each of `KEYS` that the environment lacks (or has empty) from the file; returns the
    names it set. A missing file sets nothing."""
    path = env_file() if path is None else path
    if not path.is_file():
        return []
    values = dotenv_values(path)
    taken = []
    for key in KEYS:
        value = values.get(key)
        if value and not os.environ.get(key):
            os.environ[key] = value
            taken.append(key)
    return taken
