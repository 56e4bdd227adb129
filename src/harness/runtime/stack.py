"""A stack: the services of `config/stack.toml` started together, in order, with their state
(PID files, rendered configs) under `.switchyard/stacks/<id>/` and logs under
`.switchyard/logs/<id>/`.

A stack is either persistent (`invoke up`: it outlives the command) or owned by a process (a
test run): when its owner dies without stopping it, any later command finds it orphaned and
stops it. Nothing here signals a process unless its PID file proves it is ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from harness.runtime import owners, paths, toolchain
from harness.runtime.config import (
    ConfigError,
    ServiceConfig,
    StackConfig,
    load_stack_config,
    render,
)
from harness.runtime.process import (
    AlreadyRunning,
    PidFileError,
    Service,
    ServiceSpec,
    ServiceStartError,
    attach,
    clean_stale_pid_file,
    pick_free_port,
    port_in_use,
    read_pid_file,
    start_service,
    stop_record,
    sweep_abandoned,
)

DEFAULT_STACK = "default"
PICK_PORT_ATTEMPTS = 3
LOGS_KEPT = 12


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    port: int | None
    healthy: bool
    uptime: float | None
    log: Path


class Stack:
    """The services of one stack, started and stopped as a unit."""

    def __init__(
        self,
        config: StackConfig,
        stack_id: str = DEFAULT_STACK,
        *,
        owner_pid: int | None = None,
        inherit: dict[str, object] | None = None,
    ):
        """`owner_pid`: the process whose death orphans this stack (None: persistent).
        `inherit`: placeholder values from elsewhere, e.g. `mock.url` of another stack."""
        self.config = config
        self.id = stack_id
        self.owner_pid = owner_pid
        self.inherit = dict(inherit or {})
        # By service name: config templates given as text instead of files, and added env.
        self.config_texts: dict[str, str] = {}
        self.extra_env: dict[str, dict[str, str]] = {}
        # Services this object started: they keep their Popen handle (exit codes, reaping).
        self._started: dict[str, Service] = {}
        self.dir = paths.stacks_dir() / stack_id
        self.log_dir = paths.logs_dir() / stack_id

    # ------------------------------------------------------------------ lifecycle

    def up(self, only: list[str] | None = None) -> dict[str, Service]:
        """Start every service in order; on any failure or interruption stop what started."""
        self._claim()
        started: dict[str, Service] = {}
        try:
            for name in only or list(self.config.services):
                started[name] = self.start_service(name)
            self._write_meta(state="up")
        except BaseException:
            self.down()
            raise
        return started

    def start_service(self, name: str, port: int | None = None) -> Service:
        """Start one service; `port` brings a "pick" service back on a port it had before."""
        service = self._start_service(name, port)
        self._started[name] = service
        return service

    def _start_service(self, name: str, port: int | None) -> Service:
        service_config = self.config.services[name]
        executable = self.config.root / service_config.command[0]
        built_here = service_config.build and "${" not in service_config.command[0]
        if built_here and not executable.exists():
            raise ServiceStartError(
                name, f"{executable} does not exist: build it first (`invoke build`)", None, None
            )
        attempts = PICK_PORT_ATTEMPTS if service_config.port == "pick" and port is None else 1
        for attempt in range(1, attempts + 1):
            spec = self._spec(service_config, port=port)
            try:
                return start_service(spec)
            except ServiceStartError:
                # A picked port can be taken between choosing and binding: choose again.
                if attempt == attempts or spec.port is None or not port_in_use(spec.port):
                    raise
        raise AssertionError("unreachable")

    def restart_service(self, name: str) -> Service:
        """Stop a service and start it again on the same port (e.g. Redis, mid-test)."""
        service = self.services().get(name)
        if service is None:
            return self.start_service(name)
        port = service.record.port
        service.stop(grace=self._grace(name))
        return self.start_service(name, port=port)

    def down(self, grace: float | None = None) -> list[str]:
        """Stop the services in reverse order and remove the stack's state. Returns their names.

        Interrupted (Ctrl-C, SIGTERM) while waiting out a grace period, it stops the rest at
        once, without grace, before letting the interruption through: nothing is left behind.
        """
        stopped: list[str] = []
        try:
            self._stop_all(grace, stopped)
        except KeyboardInterrupt:
            self._stop_all(0.0, stopped)
            raise
        return stopped

    def _stop_all(self, grace: float | None, stopped: list[str]) -> None:
        for pid_file in reversed(self._pid_files()):
            with contextlib.suppress(PidFileError):
                record = read_pid_file(pid_file)
                stop_record(record, pid_file, self._grace(record.name) if grace is None else grace)
                stopped.append(record.name)
            pid_file.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ inspection

    def services(self) -> dict[str, Service]:
        """The live services of this stack, from their PID files (stale ones are cleaned)."""
        live = {}
        for pid_file in self._pid_files():
            try:
                service = attach(pid_file)
            except PidFileError:
                clean_stale_pid_file(pid_file)
                continue
            started = self._started.get(service.record.name) if service else None
            if (
                started is not None
                and service is not None
                and started.record.pid == service.record.pid
            ):
                service = started
            if service is not None:
                configured = self.config.services.get(service.record.name)
                if configured is not None:
                    service.spec.health = configured.health
                live[service.record.name] = service
        return live

    def is_up(self) -> bool:
        live = self.services()
        return bool(live) and all(name in live for name in self.config.services)

    def status(self) -> list[ServiceStatus]:
        live = self.services()
        rows = []
        for name, service_config in self.config.services.items():
            service = live.get(name)
            log = self.log_dir / f"{name}.log"
            if service is None:
                rows.append(ServiceStatus(name, None, None, False, None, log))
                continue
            port = service.record.port
            healthy = port is not None and service_config.health.probe("127.0.0.1", port, 1.0)
            uptime = time.time() - service.record.started_at
            rows.append(ServiceStatus(name, service.record.pid, port, healthy, uptime, log))
        return rows

    def url(self, name: str) -> str:
        service = self.services().get(name)
        if service is None:
            raise LookupError(f"service {name!r} of stack {self.id!r} is not running")
        return service.url

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # ------------------------------------------------------------------ internals

    def _claim(self) -> None:
        if self.is_up():
            raise AlreadyRunning(
                f"stack {self.id!r} is already up (see `invoke status`; stop it with `invoke down`)"
            )
        # Leftovers of a crashed start: ours by their PID files, so safe to stop.
        self.down()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._write_meta(state="starting")
        prune_logs(keep=LOGS_KEPT)

    def _write_meta(self, state: str) -> None:
        meta = {
            "id": self.id,
            "state": state,
            "config": str(self.config.path),
            "creator": owners.identity(os.getpid()),
            "owner": owners.identity(self.owner_pid) if self.owner_pid else None,
            "updated_at": time.time(),
        }
        tmp = self.dir / ".stack.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, self.dir / "stack.json")

    def _pid_files(self) -> list[Path]:
        run_dir = self.dir / "run"
        order = {name: index for index, name in enumerate(self.config.services)}
        files = sorted(run_dir.glob("*.pid")) if run_dir.is_dir() else []
        return sorted(files, key=lambda f: order.get(f.stem, len(order)))

    def _grace(self, name: str) -> float:
        service_config = self.config.services.get(name)
        return service_config.stop_grace if service_config else 5.0

    def _spec(self, service: ServiceConfig, port: int | None = None) -> ServiceSpec:
        """How to start a service; `port` reuses the port a "pick" service had (restarts)."""
        run_dir = self.dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        if service.port == "pick":
            port = port or pick_free_port()
        elif isinstance(service.port, int):
            port = service.port
            if port_in_use(port):
                raise ServiceStartError(
                    service.name,
                    f"port {port} is already in use (configured in {self.config.path})",
                    None,
                    None,
                )
        else:
            port = None
        port_file = run_dir / f"{service.name}.port" if service.port == "report" else None
        values = self._placeholders(service, run_dir, port, port_file)
        template_text = self.config_texts.get(service.name)
        if template_text is None and service.config_template is not None:
            template_text = service.config_template.read_text()
        if template_text is not None:
            template_path = service.config_template or Path(f"<{service.name} config>")
            # The template's extension is kept: a proxy may tell TOML from YAML by it.
            suffix = service.config_template.suffix if service.config_template else ".toml"
            rendered = run_dir / f"{service.name}{suffix}"
            rendered.write_text(render(template_text, values, _unknown_in(template_path)))
            values["config"] = str(rendered)
        where = _unknown_in(self.config.path, f"services.{service.name}")
        return ServiceSpec(
            name=service.name,
            command=[render(part, values, where) for part in service.command],
            pid_file=run_dir / f"{service.name}.pid",
            log_file=self.log_dir / f"{service.name}.log",
            health=service.health,
            port=port,
            port_file=port_file,
            env={
                **{key: render(value, values, where) for key, value in service.env.items()},
                **self.extra_env.get(service.name, {}),
            },
            cwd=self.config.root,
            owner=self.id,
            owner_pid=self.owner_pid,
            startup_timeout=service.startup_timeout,
            stop_grace=service.stop_grace,
        )

    def _placeholders(
        self, service: ServiceConfig, run_dir: Path, port: int | None, port_file: Path | None
    ) -> dict[str, object]:
        values: dict[str, object] = {
            **self.inherit,
            "root": self.config.root,
            "python": sys.executable,
            "run_dir": run_dir,
            "port": port if port is not None else 0,
            "port_file": port_file or "",
            "unused_port": pick_free_port(),
        }
        if "${redis_server}" in " ".join(service.command):
            values["redis_server"] = toolchain.redis_server()
        for name, live in self.services().items():
            values[f"{name}.port"] = live.port or 0
            values[f"{name}.url"] = live.url
        return values


def _unknown_in(path: Path, key: str = "") -> Any:
    def error(name: str) -> ConfigError:
        where = f"{key}: " if key else ""
        return ConfigError(path, f"{where}${{{name}}}".rstrip(), "unknown placeholder")

    return error


# ---------------------------------------------------------------------- all stacks


def load(
    stack_id: str = DEFAULT_STACK,
    *,
    owner_pid: int | None = None,
    config_path: Path | None = None,
    inherit: dict[str, object] | None = None,
) -> Stack:
    """The stack `stack_id` as described by `config_path`, else by the stack file it was started
    from (recorded in its stack.json: `invoke status` and the tests see the services it really
    has, whatever SWITCHYARD_STACK_CONFIG says now), else by the stack file in use."""
    path = config_path or _recorded_config(stack_id) or paths.stack_config()
    config = load_stack_config(path, paths.root())
    return Stack(config, stack_id, owner_pid=owner_pid, inherit=inherit)


def _recorded_config(stack_id: str) -> Path | None:
    meta = _read_meta(paths.stacks_dir() / stack_id / "stack.json")
    recorded = Path(str(meta["config"])) if meta and meta.get("config") else None
    return recorded if recorded is not None and recorded.is_file() else None


def owned_stack_id(label: str) -> str:
    """A stack id unique to this process, e.g. `pytest-gw0-12345`."""
    return f"{label}-{os.getpid()}"


def list_stacks() -> list[str]:
    stacks = paths.stacks_dir()
    return sorted(d.name for d in stacks.iterdir() if d.is_dir()) if stacks.is_dir() else []


def sweep_orphans(config_path: Path | None = None) -> list[str]:
    """Stop the stacks whose owner died (SIGKILL, crash) and clean stale PID files everywhere;
    then stop every registered server whose keeper died, wherever its PID file is (a test's
    own server, a stack in another state directory).

    Returns a line per thing cleaned. A stack is an orphan when its owner is dead, when it was
    still starting and its creator is dead, or when its metadata is unreadable. A persistent
    stack (`invoke up`) that is up is kept, minus the PID files of services that died.
    """
    cleaned: list[str] = []
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(paths.state_dir() / "sweep.lock"):
        for stack_id in list_stacks():
            stack = load(stack_id, config_path=config_path)
            stale = [f for f in stack._pid_files() if clean_stale_pid_file(f)]
            cleaned += [f"stale PID file {f}" for f in stale]
            verdict = _orphan_verdict(_read_meta(stack.dir / "stack.json"))
            if verdict == "alive":
                continue
            if verdict == "persistent" and stack.services():
                continue
            stopped = stack.down()
            if stopped or verdict != "persistent":
                what = ", ".join(stopped) if stopped else "no live process"
                cleaned.append(f"orphaned stack {stack_id!r} ({what})")
        _remove_idle_run_locks()
        cleaned += [f"abandoned server {line}" for line in sweep_abandoned()]
    return cleaned


def _remove_idle_run_locks() -> None:
    """Drop the start locks (`<label>-<pid>.lock`) of test runs that are over: a killed run
    leaves its lock file. A lock of a live run, of an existing stack, or held, stays."""
    live = set(list_stacks())
    for path in paths.state_dir().glob("*-*.lock"):
        run_pid = path.stem.rsplit("-", 1)[1]
        if path.stem in live or not run_pid.isdigit() or psutil.pid_exists(int(run_pid)):
            continue
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            path.unlink(missing_ok=True)
        finally:
            lock.release()


def _orphan_verdict(meta: dict[str, Any] | None) -> str:
    """ "alive" (leave it), "persistent" (keep while it has services) or "orphan"."""
    if meta is None:
        return "orphan"
    if meta.get("owner") is not None:
        return "alive" if owners.is_alive(meta["owner"]) else "orphan"
    if meta.get("state") == "starting":
        return "alive" if owners.is_alive(meta.get("creator")) else "orphan"
    return "persistent"


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text())
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


def prune_logs(keep: int) -> None:
    """Keep the logs of the newest stacks and of every stack that still exists.

    Other processes start and prune stacks at the same time, so a directory may vanish
    between listing it and looking at it: that is fine, it is gone either way.
    """
    logs = paths.logs_dir()
    live = set(list_stacks())
    aged: list[tuple[float, Path]] = []
    for directory in logs.iterdir() if logs.is_dir() else []:
        if directory.name in live:
            continue
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            aged.append((directory.stat().st_mtime, directory))
    for _, directory in sorted(aged, reverse=True)[keep:]:
        shutil.rmtree(directory, ignore_errors=True)
