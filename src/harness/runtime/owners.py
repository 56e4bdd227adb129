"""Who owns each server: the registry of every server the harness starts, wherever its PID file.

Each start writes `<registry>/<token>.json` (before the process exists, and again once it
does): the service's PID record, the path of its PID file, the process that started it (the
starter) and the process whose death must end it (the keeper), each as PID and start time.
A test run is the keeper of every server started under it (`SWITCHYARD_PYTEST_OWNER`, set by
the pytest controller); outside a run, a stack's owner is (`setup-and-test`, a benchmark); a
persistent stack (`invoke up`) has none. The sweep (`harness.runtime.process.sweep_abandoned`)
reads the registry; nothing here signals anything.

The registry is `<state dir>/owners/`. A test run names it in `SWITCHYARD_REGISTRY` when it
starts, so a test that moves `SWITCHYARD_STATE_DIR` still registers its servers where the next
command looks.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import psutil

from harness.runtime import paths

REGISTRY_ENV = "SWITCHYARD_REGISTRY"
# The test run that owns what its tests start (set by the pytest controller for its workers).
RUN_OWNER_ENV = "SWITCHYARD_PYTEST_OWNER"

Identity = dict[str, float]


def registry_dir() -> Path:
    return Path(os.environ.get(REGISTRY_ENV, paths.state_dir() / "owners"))


def started(proc: psutil.Process) -> float:
    """When the process started, in seconds after boot: what tells it from a later process that
    reuses its PID. Not psutil's `create_time`: that adds the boot time as the wall clock tells
    it now, which moves by whole seconds when the clock is adjusted, so a long-lived owner would
    look like another process and its servers would be swept while it runs."""
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        # The fields after the command's closing parenthesis start at the 3rd; `starttime`,
        # in clock ticks after boot, is the 22nd.
        return int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        raise psutil.NoSuchProcess(proc.pid) from None
    except (OSError, ValueError, IndexError):
        # No procfs (macOS): psutil's start time there is read once from the kernel and stays.
        return proc.create_time()


def same_start(proc: psutil.Process, recorded: float) -> bool:
    return math.isclose(started(proc), recorded, abs_tol=1e-3)


def identity(pid: int) -> Identity:
    """A process as PID and start time; a PID that is gone gets start time -1 (never alive)."""
    try:
        return {"pid": pid, "started": started(psutil.Process(pid))}
    except psutil.Error:
        return {"pid": pid, "started": -1.0}


def is_alive(who: Any) -> bool:
    """Whether the process an identity names still runs: same PID, same start time, and not a
    zombie (a killed process whose parent died may never be reaped)."""
    if not isinstance(who, dict):
        return False
    try:
        proc = psutil.Process(int(who["pid"]))
        return same_start(proc, float(who["started"])) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def keeper_for(owner_pid: int | None) -> Identity | None:
    """The process whose death ends a server: the test run it was started under, else its
    stack's owner, else none (it outlives the command that started it)."""
    run = os.environ.get(RUN_OWNER_ENV, "")
    if run.isdigit():
        return identity(int(run))
    return identity(owner_pid) if owner_pid else None


def write(path: Path, entry: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees a half-written entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entry, indent=2) + "\n")
    os.replace(tmp, path)


def entries() -> list[tuple[Path, dict[str, Any]]]:
    """Every readable entry; an unreadable one is dropped (nothing in it can be trusted)."""
    found = []
    directory = registry_dir()
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if isinstance(entry, dict) and isinstance(entry.get("record"), dict):
            found.append((path, entry))
        else:
            path.unlink(missing_ok=True)
    return found


def forget(path: str | Path) -> None:
    if path:
        Path(path).unlink(missing_ok=True)
