"""Finding and provisioning what the stack needs: uv, cargo, redis-server; building services."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.config import StackConfig
from harness.process import ProcessError, run


class ToolMissing(ProcessError):
    """A tool the stack needs is absent and cannot be installed from here."""


REDIS_HINT = (
    "redis-server not found. `invoke setup` installs Debian's redis-server package when run as "
    "root; otherwise install Redis (e.g. `sudo apt-get install redis-server`) or point "
    "SWITCHYARD_REDIS_SERVER at the binary."
)


def redis_server() -> str:
    """The redis-server binary: $SWITCHYARD_REDIS_SERVER, else the one on PATH."""
    configured = os.environ.get("SWITCHYARD_REDIS_SERVER")
    if configured:
        if not Path(configured).is_file():
            raise ToolMissing(f"SWITCHYARD_REDIS_SERVER={configured} is not a file")
        return configured
    found = shutil.which("redis-server")
    if found is None:
        raise ToolMissing(REDIS_HINT)
    return found


def ensure_redis(say: Callable[[str], None]) -> str:
    """redis-server, installed with apt-get when missing and we are root on a Debian machine."""
    try:
        return redis_server()
    except ToolMissing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise
    say("installing redis-server with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    quiet = ["-qq", "-o", "Dpkg::Use-Pty=0"]
    if run(["apt-get", "install", "-y", *quiet, "redis-server"], env=env) != 0:
        # A fresh machine has no package lists yet.
        run(["apt-get", "update", "-qq"], env=env)
        if run(["apt-get", "install", "-y", *quiet, "redis-server"], env=env) != 0:
            raise ToolMissing("apt-get could not install redis-server. " + REDIS_HINT)
    return redis_server()


def require(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise ToolMissing(f"{tool} not found on PATH. {hint}")
    return found


def check_cargo() -> str:
    return require(
        "cargo",
        "Install Rust with rustup (https://rustup.rs) or your package manager; "
        "the proxy needs cargo and rustc 1.85 or later.",
    )


def build_services(config: StackConfig, say: Callable[[str], None]) -> None:
    """Run each service's build command (cargo builds incrementally, so a fresh tree is quick)."""
    for service in config.services.values():
        if not service.build:
            continue
        if service.build[0] == "cargo":
            check_cargo()
        say(f"building {service.name}: {' '.join(service.build)}")
        code = run(service.build, cwd=config.root)
        if code != 0:
            raise ProcessError(f"building {service.name} failed (exit code {code})")
