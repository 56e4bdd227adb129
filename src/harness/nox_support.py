"""Helpers for noxfile.py: interpreter discovery and stack preparation."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness import stack, toolchain


def expose_pyenv_interpreters(versions: Iterable[str]) -> None:
    """Put pyenv's installed interpreters on PATH.

    pyenv's shims fail for versions that are not selected globally, so neither nox nor uv can
    find them through the shims; the versions' own bin directories work. Nothing is downloaded.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = []
    for version in versions:
        found += sorted(glob.glob(str(root / "versions" / f"{version}.*" / "bin")))[-1:]
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


def prepare_stack(session: Any) -> None:
    """Build what the stack builds (cargo is incremental) and make sure redis-server exists."""
    config = stack.load().config
    toolchain.build_services(config, session.log)
    toolchain.ensure_redis(session.log)
