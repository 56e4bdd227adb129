"""The one process abstraction: every server and every foreground tool run goes through here.

A background service is started in its own session (so it leads its own process group), with
stdout and stderr in a log file, and a PID file that records enough to recognise it later:
PID, process start time, command, port and log path. A PID file whose process is gone, or whose
PID now belongs to a process with another start time, is stale: it is removed, and nothing is
signalled. Stopping sends SIGTERM to the whole group, waits a grace period, then sends SIGKILL.

Every start is also recorded in the registry (`harness.runtime.owners`) with the process whose
death must end the server; `sweep_abandoned` stops the servers whose keeper died, wherever
their PID files are.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil

from harness.runtime import owners
from harness.runtime.poll import backoff_delays

# Children inherit this variable; its value names the stack and service, so descendants that
# escaped the process group can still be found and stopped.
OWNER_ENV = "SWITCHYARD_OWNER"

LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class ProcessError(RuntimeError):
    """A background service could not be started, or a foreground command failed."""


class AlreadyRunning(ProcessError):
    """A live process recorded in the PID file already provides this service."""


class ServiceStartError(ProcessError):
    def __init__(self, name: str, reason: str, exit_code: int | None, log_path: Path | None):
        self.name = name
        self.exit_code = exit_code
        self.log_path = log_path
        self.log_tail = tail(log_path) if log_path else ""
        code = "" if exit_code is None else f" (exit code {exit_code})"
        where = f"\n--- last lines of {log_path} ---\n{self.log_tail}" if log_path else ""
        super().__init__(f"{name}: {reason}{code}{where}")


# --------------------------------------------------------------------------- health checks


@dataclass(frozen=True)
class HealthCheck:
    """How to tell that a service is ready: `http` GET of a path, Redis `PING`, or a TCP connect."""

    kind: str = "tcp"
    path: str = "/health"

    @classmethod
    def parse(cls, text: str) -> HealthCheck:
        kind, _, path = text.partition(":")
        if kind not in {"http", "redis", "tcp"}:
            raise ValueError(f"unknown health check {text!r}: use http:/path, redis or tcp")
        return cls(kind, path or "/health")

    def probe(self, host: str, port: int, timeout: float) -> bool:
        try:
            if self.kind == "http":
                url = f"http://{host}:{port}{self.path}"
                return httpx.get(url, timeout=timeout).status_code == 200
            with socket.create_connection((host, port), timeout=timeout) as sock:
                if self.kind == "redis":
                    sock.sendall(b"PING\r\n")
                    return sock.recv(64).startswith(b"+PONG")
                return True
        except (OSError, httpx.HTTPError):
            return False


# --------------------------------------------------------------------------- PID files


@dataclass
class PidRecord:
    """What a PID file holds. `started` (seconds after boot, `owners.started`) tells our
    process from a later one with its PID."""

    name: str
    pid: int
    started: float
    command: list[str]
    port: int | None
    log: str
    started_at: float
    owner: str
    # A token unique to this start, in the service's environment (see OWNER_ENV).
    marker: str = ""
    # Its entry in the registry of started servers (`harness.runtime.owners`).
    registry: str = ""

    @property
    def pgid(self) -> int:
        # Started with start_new_session, so the service leads a group whose id is its PID.
        return self.pid


class PidFileError(ProcessError):
    """A PID file exists but cannot be read: corrupt, empty or half-written."""


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write atomically, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(tmp, path)


def read_pid_file(path: Path) -> PidRecord:
    try:
        data = json.loads(path.read_text())
        return PidRecord(**data)
    except (OSError, ValueError, TypeError) as exc:
        raise PidFileError(
            f"{path}: unreadable PID file ({exc.__class__.__name__}: {exc})"
        ) from exc


def owned_process(record: PidRecord) -> psutil.Process | None:
    """The process with the record's PID and start time (a zombie included), or None."""
    if record.pid <= 0:
        return None
    try:
        proc = psutil.Process(record.pid)
        return proc if owners.same_start(proc, record.started) else None
    except psutil.Error:
        return None


def process_of(record: PidRecord) -> psutil.Process | None:
    """The live process the record describes, or None when it is gone or the PID was reused."""
    proc = owned_process(record)
    try:
        if proc is None or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def group_is_ours(record: PidRecord) -> bool:
    """Whether signalling the record's process group can only reach our processes.

    True while our leader exists (even as a zombie), and also once no process has its PID:
    the kernel never hands out a PID that is still some process group's id, so any process
    left in that group is a descendant of ours. False when the PID now names a stranger.
    """
    return owned_process(record) is not None or not psutil.pid_exists(record.pid)


# --------------------------------------------------------------------------- services


@dataclass
class ServiceSpec:
    """Everything needed to start one background service."""

    name: str
    command: list[str]
    pid_file: Path
    log_file: Path
    health: HealthCheck = field(default_factory=HealthCheck)
    host: str = "127.0.0.1"
    port: int | None = None
    # When set, the service binds port 0 and writes the port it got here: no race for a port.
    port_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    owner: str = ""
    # The process whose death orphans the service (None: the test run it is started under, or,
    # outside one, nobody: it outlives the command that started it). See `owners.keeper_for`.
    owner_pid: int | None = None
    startup_timeout: float = 30.0
    stop_grace: float = 5.0


@dataclass
class Service:
    """A started service: its spec, its PID record, and the Popen handle when we are its parent."""

    spec: ServiceSpec
    record: PidRecord
    popen: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int | None:
        return self.record.port

    @property
    def url(self) -> str:
        scheme = "redis" if self.spec.health.kind == "redis" else "http"
        return f"{scheme}://{self.spec.host}:{self.record.port}"

    def alive(self) -> bool:
        return process_of(self.record) is not None

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the service's whole group, if the group is provably still ours."""
        if group_is_ours(self.record):
            _kill_group(self.record.pgid, sig)

    def wait_exit(self, timeout: float) -> int:
        """The exit code of a service we started in this process, once it exits."""
        if self.popen is None:
            raise ProcessError(f"{self.spec.name} was not started by this process")
        return self.popen.wait(timeout=timeout)

    def stop(self, grace: float | None = None) -> None:
        stop_record(
            self.record, self.spec.pid_file, self.spec.stop_grace if grace is None else grace
        )
        if self.popen is not None:
            # Reap our own child so it does not linger as a zombie.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)


def start_service(spec: ServiceSpec) -> Service:
    """Start a service, record it, and wait until it is healthy, or fail fast with its log."""
    clean_stale_pid_file(spec.pid_file)
    if spec.pid_file.exists():
        record = read_pid_file(spec.pid_file)
        raise AlreadyRunning(
            f"{spec.name} is already running (PID {record.pid}, port {record.port})"
        )
    if spec.port_file is not None:
        spec.port_file.unlink(missing_ok=True)
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = f"{spec.owner}/{spec.name}/{token}"
    env = {**os.environ, **spec.env, OWNER_ENV: marker}
    record = PidRecord(
        name=spec.name,
        pid=0,
        started=-1.0,
        command=list(spec.command),
        port=spec.port,
        log=str(spec.log_file),
        started_at=time.time(),
        owner=spec.owner,
        marker=marker,
        registry=str(owners.registry_dir() / f"{token}.json"),
    )
    entry = {
        "pid_file": str(spec.pid_file),
        "starter": owners.identity(os.getpid()),
        "keeper": owners.keeper_for(spec.owner_pid),
    }
    # Registered before it exists: a starter killed right after the fork leaves an entry the
    # sweep finds the server by (its marker).
    owners.write(Path(record.registry), {**entry, "record": asdict(record)})
    # From the fork until the PID file is written, nothing else could find the server to stop
    # it: a Ctrl-C or SIGTERM there is held until the file exists, then stops it here.
    service: Service | None = None
    try:
        with deferred_interrupts():
            with open(spec.log_file, "wb") as log:
                try:
                    popen = subprocess.Popen(
                        spec.command,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=spec.cwd,
                        env=env,
                        start_new_session=True,
                    )
                except OSError as exc:
                    owners.forget(record.registry)
                    raise ServiceStartError(
                        spec.name, f"cannot run {spec.command[0]}: {exc}", None, None
                    ) from exc
            record.pid = popen.pid
            service = Service(spec, record, popen)
            record.started = owners.identity(popen.pid)["started"]
            owners.write(Path(record.registry), {**entry, "record": asdict(record)})
            write_pid_file(spec.pid_file, record)
        _wait_until_ready(service)
    except BaseException:
        # Whatever interrupted the start (failure, Ctrl-C), leave nothing behind.
        if service is not None:
            service.stop(grace=1.0)
        raise
    return service


def _wait_until_ready(service: Service) -> None:
    spec = service.spec
    deadline = time.monotonic() + spec.startup_timeout
    delays = backoff_delays()
    while True:
        exit_code = service.popen.poll() if service.popen else None
        if exit_code is not None:
            raise ServiceStartError(spec.name, "exited during startup", exit_code, spec.log_file)
        if service.record.port is None and spec.port_file is not None:
            service.record.port = _read_port_file(spec.port_file)
            if service.record.port is not None:
                write_pid_file(spec.pid_file, service.record)
        remaining = deadline - time.monotonic()
        if service.record.port is not None and spec.health.probe(
            spec.host, service.record.port, timeout=max(0.05, min(1.0, remaining))
        ):
            return
        if remaining <= 0:
            raise ServiceStartError(
                spec.name, f"not healthy within {spec.startup_timeout:g}s", None, spec.log_file
            )
        time.sleep(min(next(delays), max(remaining, 0.001)))


def _read_port_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        # Not written yet: the service writes it atomically once bound.
        return None


def attach(pid_file: Path, spec: ServiceSpec | None = None) -> Service | None:
    """The running service a PID file describes, or None (a stale file is cleaned)."""
    if clean_stale_pid_file(pid_file):
        return None
    if not pid_file.exists():
        return None
    record = read_pid_file(pid_file)
    spec = spec or ServiceSpec(
        name=record.name, command=record.command, pid_file=pid_file, log_file=Path(record.log)
    )
    return Service(spec, record)


def clean_stale_pid_file(pid_file: Path) -> bool:
    """Remove a PID file whose process is gone or whose PID was reused. True if it was stale.

    A corrupt file is stale too: nothing in it can be trusted to signal anything. Any group
    members of a dead leader are still ours (the kernel never reuses a PID that is still a
    process group id), so they are stopped before the file goes.
    """
    if not pid_file.exists():
        return False
    try:
        record = read_pid_file(pid_file)
    except PidFileError:
        pid_file.unlink(missing_ok=True)
        return True
    if process_of(record) is not None:
        return False
    if group_is_ours(record):
        _kill_group(record.pgid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    owners.forget(record.registry)
    return True


def stop_record(record: PidRecord, pid_file: Path | None, grace: float) -> None:
    """SIGTERM the service's group, wait up to `grace`, SIGKILL what is left, drop the PID file
    and the registry entry. A record without a PID (registered, never started) has no group."""
    if record.pid > 0 and group_is_ours(record):
        members = _group_members(record.pgid)
        _kill_group(record.pgid, signal.SIGTERM)
        alive = _wait_gone(members, grace)
        if alive:
            _kill_group(record.pgid, signal.SIGKILL)
            _wait_gone(alive, 2.0)
    for proc in find_owned_processes(record.marker) if record.marker else []:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if pid_file is not None:
        pid_file.unlink(missing_ok=True)
    owners.forget(record.registry)


def sweep_abandoned(grace: float = 2.0) -> list[str]:
    """Stop every registered server whose keeper died, wherever its PID file is; drop the
    entries of servers that are gone. Returns a line per server stopped.

    A persistent server (no keeper) is abandoned once its starter is gone and its PID file no
    longer names it (its state directory was removed). Only the recorded process (same PID and
    start time) with its group, and processes carrying the entry's exact marker, are signalled:
    a process that is neither is never touched.
    """
    stopped = []
    for path, entry in owners.entries():
        try:
            record = PidRecord(**entry["record"])
        except TypeError:
            owners.forget(path)
            continue
        pid_file = Path(str(entry.get("pid_file", "")))
        keeper = entry.get("keeper")
        if keeper is not None and owners.is_alive(keeper):
            continue
        named = _names(pid_file, record)
        if keeper is None and (owners.is_alive(entry.get("starter")) or named):
            continue
        if owned_process(record) is None and not find_owned_processes(record.marker):
            owners.forget(path)
            if named:
                clean_stale_pid_file(pid_file)
            continue
        stop_record(record, pid_file if named else None, grace)
        owners.forget(path)
        stopped.append(f"{record.name} (PID {record.pid}, PID file {pid_file})")
    return stopped


def _names(pid_file: Path, record: PidRecord) -> bool:
    """Whether the PID file exists and describes this very start (same marker)."""
    try:
        return pid_file.is_file() and read_pid_file(pid_file).marker == record.marker
    except PidFileError:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes have exited; return those still running after `timeout`.

    A zombie counts as gone: when its parent is not us (the server outlived the process that
    started it), only its new parent can reap it, and waiting for that would stall every stop.
    `psutil.wait_procs` would wait for such a zombie until the timeout (its PID still exists),
    so it waits in short rounds, and zombies are dropped before each round.
    """
    deadline = time.monotonic() + timeout
    delays = backoff_delays(first=0.002, cap=0.05)
    alive = list(procs)
    while True:
        alive = [proc for proc in alive if _running(proc)]
        remaining = deadline - time.monotonic()
        if not alive or remaining <= 0:
            return alive
        _, alive = psutil.wait_procs(alive, timeout=min(next(delays), remaining))


def _running(proc: psutil.Process) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            # Reap it if it is our own child; harmless if it is not.
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(proc.pid, os.WNOHANG)
            return False
        return proc.is_running()
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def find_owned_processes(marker: str) -> list[psutil.Process]:
    """Processes carrying a service's marker exactly: descendants that escaped its group."""
    found: list[psutil.Process] = []
    if not marker:
        return found
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(OWNER_ENV) == marker:
                found.append(proc)
        except psutil.Error:
            continue
    return found


# --------------------------------------------------------------------------- ports


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A port free right now. Only for servers that cannot bind port 0 and report it (Redis):
    the caller retries with another port if the server then finds it taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------- foreground commands


def run(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    grace: float = 5.0,
    on_output: Callable[[str], None] | None = None,
) -> int:
    """Run a command in the foreground and return its exit code.

    If we are interrupted (Ctrl-C, or SIGTERM turned into an exception), the command's whole
    group is stopped before the interruption propagates, so nothing outlives us.
    """
    popen = subprocess.Popen(
        list(command),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=functools.partial(_terminate_with_parent, os.getpid()),
        stdout=subprocess.PIPE if on_output else None,
        stderr=subprocess.STDOUT if on_output else None,
        text=bool(on_output),
    )
    try:
        if on_output and popen.stdout is not None:
            for line in popen.stdout:
                on_output(line.rstrip("\n"))
        return popen.wait()
    except BaseException:
        _kill_group(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill_group(popen.pid, signal.SIGKILL)
            popen.wait()
        raise


def _terminate_with_parent(parent: int) -> None:
    """In the child, before exec: ask Linux for SIGTERM when our parent dies, so a foreground
    command (pytest, cargo) does not outlive a SIGKILLed harness. If the parent died before
    the request took effect, nobody will send that signal: go now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into KeyboardInterrupt so `finally` blocks run and clean up."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block is done, then deliver the first one to
    the handler that was in place: for a few steps that must not be cut in half. Off the main
    thread (where no handler can be set) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if held:
            # Re-sent, so the signal meets exactly what it would have met outside the block.
            os.kill(os.getpid(), held[0])


def tail(path: Path | str, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
