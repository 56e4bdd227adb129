"""Watching the processes a measurement started, for the benchmark and the soak alike: their RSS
(and open file descriptors) sampled on a thread of its own, their CPU seconds, the machine's, and
their established connections. Everything is read with psutil; a process that is gone reads as
nothing rather than as an error."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType

import psutil


def tree_processes(pid: int) -> list[psutil.Process]:
    """A process and its descendants ([] when it is gone)."""
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _processes(pid: int, tree: bool) -> list[psutil.Process]:
    if tree:
        return tree_processes(pid)
    try:
        return [psutil.Process(pid)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User plus system CPU seconds so far of a process (and, with `tree`, its descendants)."""
    total = 0.0
    for proc in _processes(pid, tree):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return float(total)


@dataclass(frozen=True)
class Reading:
    """What one tick saw of a process (tree): its RSS in bytes, and its open descriptors when
    they are sampled."""

    rss: int
    fds: int | None = None


def _read(procs: list[psutil.Process], fds: bool) -> Reading | None:
    rss = open_fds = 0
    found = False
    for proc in procs:
        try:
            rss += proc.memory_info().rss
            open_fds += proc.num_fds() if fds else 0
            found = True
        except psutil.Error:
            continue
    if not found:
        return None
    return Reading(rss, open_fds if fds else None)


class Sampler:
    """Samples named processes every `interval` seconds on a thread of its own, from `start()`
    (time 0 of `samples`) to `stop()`; also a context manager that does both.

    Cheap on purpose: on a 2-CPU machine a sampler that walks /proc at every tick steals enough
    CPU, in bursts, to show in the proxy's p99. With `tree`, each process tree is resolved once
    (and again every `refresh` seconds, for a command that forks late); a tick reads each
    process's statm (and, with `fds`, its descriptor table). With `at_start` the first tick is
    at time 0, else after the first interval.
    """

    def __init__(
        self,
        pids: Mapping[str, int],
        interval: float = 0.1,
        *,
        tree: bool = True,
        fds: bool = False,
        refresh: float = 5.0,
        at_start: bool = False,
    ) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.tree = tree
        self.fds = fds
        self.refresh = refresh
        self.at_start = at_start
        self.samples: dict[str, list[tuple[float, Reading]]] = {name: [] for name in pids}
        self._procs: dict[str, list[psutil.Process]] = {}
        self._resolved_at: float | None = None
        self._began = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def now(self) -> dict[str, Reading | None]:
        """One reading of every process, on the caller's thread."""
        stale = self._resolved_at is None or time.monotonic() - self._resolved_at > self.refresh
        if stale and (self.tree or self._resolved_at is None):
            self._procs = {name: _processes(pid, self.tree) for name, pid in self.pids.items()}
            self._resolved_at = time.monotonic()
        return {name: _read(self._procs.get(name, []), self.fds) for name in self.pids}

    def rss(self, name: str) -> list[int]:
        """The RSS samples of one process, in bytes."""
        return [reading.rss for _, reading in self.samples[name]]

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _tick(self) -> None:
        at = time.monotonic() - self._began
        for name, reading in self.now().items():
            if reading is not None:
                self.samples[name].append((at, reading))

    def _loop(self) -> None:
        if self.at_start:
            self._tick()
        while not self._stop.wait(self.interval):
            self._tick()


def connections(pid: int, upstream_port: int | None) -> dict[str, int]:
    """Established TCP connections of a process: to the upstream's port, and the others
    (clients); {} when they cannot be read."""
    try:
        found = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return {}
    established = [c for c in found if c.status == psutil.CONN_ESTABLISHED and c.raddr]
    upstream = sum(c.raddr.port == upstream_port for c in established)
    return {"upstream": upstream, "clients": len(established) - upstream}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (all CPUs, idle and iowait excluded)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass
class CpuMeter:
    """Who used the CPUs during the load: the proxy, the upstream, this harness with the load
    generator, and everyone else on the machine (other jobs), each in cores on average."""

    proxy_pid: int
    upstream_pid: int
    began: float = 0.0
    start: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        return {
            "proxy": cpu_seconds(self.proxy_pid, tree=False),
            "upstream": cpu_seconds(self.upstream_pid, tree=False),
            "harness": children_cpu() + own_cpu(),
            "busy": busy_cpu(),
        }

    def begin(self) -> None:
        self.began = time.monotonic()
        self.start = self._now()

    def end(self) -> dict[str, float | None]:
        wall = time.monotonic() - self.began
        now = self._now()
        used = {name: now[name] - self.start[name] for name in now}
        ours = used["proxy"] + used["upstream"] + used["harness"]
        if wall <= 0:
            return {"wall_s": wall}
        return {
            "wall_s": round(wall, 2),
            "proxy_cores": round(used["proxy"] / wall, 3),
            "upstream_cores": round(used["upstream"] / wall, 3),
            "harness_cores": round(used["harness"] / wall, 3),
            "other_cores": round(max(used["busy"] - ours, 0.0) / wall, 3),
            "machine_busy_cores": round(used["busy"] / wall, 3),
        }
