"""The soak: switchyard under a steady, realistic load for a minute or more, watched for errors,
latency drift, memory growth and leaked file descriptors.

`scripts/soak.py` and `nox -s soak` call `main`. Everything runs under the process manager, as
one stack of its own (`soak-<pid>`, owned by this process): the fast fixed-response upstream
(`fast_upstream` in `proxy/bench/`, which holds thousands of requests per second on one core, so
the upstream is never the limit) and the release build of switchyard in front of it, deployed
as in production: tenant keys, the SQLite ledger, the memory cache, log level `info`. The load
generator (`loadgen` in `proxy/bench/`) sends an open-loop load at `--rate` for `--duration`
seconds with a mix of streaming, non-streaming and repeated (cache-hit) requests on both
endpoints, and reports latency percentiles and errors per second and per window.

While it runs, the proxy's RSS and open file descriptors are sampled every `--sample-interval`
seconds. Afterwards: the ledger must hold one record per request, and the RSS trend after the
warm-up (the least-squares slope, and the first against the last window) is reported. The
result goes to stdout as Markdown and to `--results-dir` (default `reports/soak/`) as soak.json,
soak.md and soak.png. Exit code 1 when any request failed (or another check did), 0 otherwise.
Everything started is stopped at the end, on Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from harness.perf import measuring
from harness.perf import soak_report as report
from harness.perf.bench_report import OpenTimetable
from harness.runtime import paths
from harness.runtime.config import ServiceConfig, StackConfig
from harness.runtime.process import HealthCheck, ProcessError, run, signals_as_exceptions
from harness.runtime.stack import Stack

UPSTREAM = "upstream"
PROXY = "switchyard"
MODEL = "soak"
TENANT = "soak"
BINARIES = measuring.BINARIES
# About 30% streaming, 40% non-streaming and 30% repeats that the cache answers; a sixth of the
# unique requests go to the Responses API (translated onto the chat-only upstream).
DEFAULT_MIX = "whole=35,stream=25,responses=5,responses_stream=5,repeat=25,repeat_stream=5"
# Bounded structures of the proxy, sized so they fill up within the warm-up at the default
# rate: growth after that is what a leak would look like, not a cache filling.
CACHE_ENTRIES = 5000
RESPONSE_STORE = 1000
# The latencies /stats keeps (`[slo] latency_window`, 100,000 by default: 100 s to fill at
# 1000 req/s, so its growth would look like a leak in a one-minute run).
STATS_WINDOW = 10_000


# The RSS settles within about 30 s at 1000 req/s (the bounded stores above fill, the allocator
# finds its size); a leak of 100 bytes a request would then show as almost 6 MiB/min.
DEFAULT_MAX_RSS_GROWTH = 1024.0


class SoakError(ProcessError):
    """The soak could not run: a binary is missing, the proxy misbehaves, the load failed."""


@dataclass
class SoakOptions:
    rate: float = 1000.0
    duration: float = 90.0
    warmup: float = 30.0
    window: float = 10.0
    sample_interval: float = 0.5
    mix: str = DEFAULT_MIX
    repeat_pool: int = 32
    timeout_ms: int = 10_000
    chunk_interval_us: int = 1000
    upstream_workers: int = 1
    loadgen_threads: int = 1
    proxy_log: str = "info"
    max_rss_growth: float | None = DEFAULT_MAX_RSS_GROWTH
    results: Path = field(default_factory=lambda: paths.reports_dir() / "soak")
    build: bool = True
    plot: bool = True
    quick: bool = False
    no_color: bool = False


def parse_args(argv: Sequence[str] | None = None) -> SoakOptions:
    parser = argparse.ArgumentParser(
        prog="soak",
        description="Run switchyard at a fixed rate for a while; watch errors, latency, RSS, fds.",
    )
    add = parser.add_argument
    add("--rate", type=float, default=1000.0, help="requests per second (1000)")
    add("--duration", type=float, help="seconds of load, warm-up included (90; --quick: 10)")
    add("--quick", action="store_true", help="a short sanity run: 10 s, 3 s warm-up")
    add("--warmup", type=float, help="seconds left out of the RSS trend (30; --quick: 3)")
    add("--window", type=float, help="seconds per row of the latency table (10; --quick: 2)")
    add("--sample-interval", type=float, default=0.5, help="seconds between RSS samples (0.5)")
    add("--mix", default=DEFAULT_MIX, help=f"request kinds and weights ({DEFAULT_MIX})")
    add("--repeat-pool", type=int, default=32, help="distinct texts the repeats use (32)")
    add("--timeout-ms", type=int, default=10_000, help="a slower answer is an error (10000)")
    add("--chunk-interval-us", type=int, default=1000, help="upstream pause between events")
    add("--upstream-workers", type=int, default=1, help="the fast upstream's threads (1)")
    add("--loadgen-threads", type=int, default=1, help="the load generator's threads (1)")
    add("--proxy-log", default="info", help="switchyard's SWITCHYARD_LOG (info, as deployed)")
    add(
        "--max-rss-growth",
        type=float,
        metavar="KIB_PER_MIN",
        help=f"fail when the RSS slope after the warm-up exceeds this ({DEFAULT_MAX_RSS_GROWTH:g}; "
        "0: not enforced; --quick: not enforced)",
    )
    add("--results-dir", type=Path, help="where results go (reports/soak/)")
    add("--no-build", action="store_true", help="do not run cargo build first")
    add("--no-plot", action="store_true", help="skip soak.png")
    add("--no-color", action="store_true", help="plain progress lines (so does NO_COLOR)")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (10.0 if args.quick else 90.0)
    warmup = args.warmup if args.warmup is not None else (3.0 if args.quick else 30.0)
    max_rss_growth = args.max_rss_growth
    if max_rss_growth is None and not args.quick:
        max_rss_growth = DEFAULT_MAX_RSS_GROWTH
    if max_rss_growth == 0:
        max_rss_growth = None
    window = args.window if args.window is not None else (2.0 if args.quick else 10.0)
    problems = []
    if not args.rate > 0:
        problems.append("--rate must be positive")
    if not duration > 0:
        problems.append("--duration must be positive")
    if not 0 <= warmup < duration:
        problems.append("--warmup must be at least 0 and shorter than --duration")
    if not (window > 0 and round(window * 1000) >= 1):
        problems.append("--window must be positive")
    if not args.sample_interval > 0:
        problems.append("--sample-interval must be positive")
    if args.repeat_pool < 1:
        problems.append("--repeat-pool must be at least 1")
    if problems:
        parser.error("; ".join(problems))
    return SoakOptions(
        rate=args.rate,
        duration=duration,
        warmup=warmup,
        window=window,
        sample_interval=args.sample_interval,
        mix=args.mix,
        repeat_pool=args.repeat_pool,
        timeout_ms=args.timeout_ms,
        chunk_interval_us=args.chunk_interval_us,
        upstream_workers=args.upstream_workers,
        loadgen_threads=args.loadgen_threads,
        proxy_log=args.proxy_log,
        max_rss_growth=max_rss_growth,
        results=args.results_dir or paths.reports_dir() / "soak",
        build=not args.no_build,
        plot=not args.no_plot,
        quick=args.quick,
        no_color=args.no_color or "NO_COLOR" in os.environ,
    )


# --------------------------------------------------------------------------- the stack


def proxy_config() -> str:
    """switchyard as deployed: a tenant key, the SQLite ledger (next to the rendered config, in
    the stack's run directory), the memory cache, prices. `${upstream.url}` is filled in by the
    stack once the upstream has its port."""
    return f"""# Rendered by the soak (harness.perf.soak).
[server]
bind = "127.0.0.1"
port = 0
shutdown_grace_ms = 2000
response_store_capacity = {RESPONSE_STORE}

[cache]
backend = "memory"
ttl_seconds = 3600
max_entries = {CACHE_ENTRIES}

[ledger]
backend = "sqlite"
path = "soak-ledger.sqlite3"

[auth]
admin_key_env = "SOAK_ADMIN_KEY"

[[auth.keys]]
tenant = "{TENANT}"
key_env = "SOAK_TENANT_KEY"

[[upstreams]]
name = "fast"
base_url = "${{upstream.url}}/v1"
responses = false

[[models]]
name = "{MODEL}"
upstreams = ["fast"]

[prices."{MODEL}"]
input = 0.15
output = 0.60

[slo]
latency_window = {STATS_WINDOW}
"""


def soak_stack(
    options: SoakOptions, bins: dict[str, Path], keys: dict[str, str], stack_id: str
) -> Stack:
    http = HealthCheck("http", "/health")
    upstream_command = [str(bins["fast_upstream"]), "--port", "0", "--port-file", "${port_file}"]
    upstream_command += ["--chunk-interval-us", str(options.chunk_interval_us)]
    upstream_command += ["--workers", str(options.upstream_workers)]
    proxy_command = [str(bins["switchyard"]), "--config", "${config}", "--port", "0"]
    proxy_command += ["--port-file", "${port_file}"]
    services = {
        UPSTREAM: ServiceConfig(name=UPSTREAM, command=upstream_command, health=http),
        PROXY: ServiceConfig(
            name=PROXY,
            command=proxy_command,
            health=http,
            env={"SWITCHYARD_LOG": options.proxy_log},
            stop_grace=5.0,
        ),
    }
    config = StackConfig(
        path=Path("<soak stack>"), root=paths.root(), services=services, proxy=PROXY, mock=None
    )
    soak = Stack(config, stack_id, owner_pid=os.getpid())
    soak.config_texts[PROXY] = proxy_config()
    soak.extra_env[PROXY] = {
        "SOAK_ADMIN_KEY": keys["admin"],
        "SOAK_TENANT_KEY": keys["tenant"],
    }
    return soak


def ensure_binaries(options: SoakOptions, say: Callable[[str], None]) -> dict[str, Path]:
    return measuring.ensure_release_binaries(options.build, say, SoakError)


# --------------------------------------------------------------------------- watching


class Watcher:
    """Samples one process's RSS and open file descriptors every `interval` seconds, on a
    thread of its own; time 0 is `start()`."""

    def __init__(self, pid: int, interval: float, upstream_port: int | None = None) -> None:
        self.process = psutil.Process(pid)
        self.upstream_port = upstream_port
        self.interval = interval
        self.rss: list[tuple[float, int]] = []
        self.fds: list[int] = []
        self._began = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-watcher", daemon=True)

    def sample(self) -> tuple[int, int] | None:
        try:
            return self.process.memory_info().rss, self.process.num_fds()
        except psutil.Error:
            return None

    def connections(self) -> dict[str, int]:
        """Established TCP connections of the proxy: to the upstream, and from clients."""
        try:
            found = self.process.net_connections(kind="tcp")
        except psutil.Error:
            return {}
        established = [c for c in found if c.status == psutil.CONN_ESTABLISHED and c.raddr]
        upstream = sum(c.raddr.port == self.upstream_port for c in established)
        return {"upstream": upstream, "clients": len(established) - upstream}

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            now = self.sample()
            if now is not None:
                self.rss.append((time.monotonic() - self._began, now[0]))
                self.fds.append(now[1])
            if self._stop.wait(self.interval):
                return


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except psutil.Error:
        return 0.0


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
            "proxy": cpu_seconds(self.proxy_pid),
            "upstream": cpu_seconds(self.upstream_pid),
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


# --------------------------------------------------------------------------- the run


def loadgen_command(binary: Path, url: str, options: SoakOptions, tenant_key: str) -> list[str]:
    window_ms = round(options.window * 1000)
    command = [str(binary), "--target", f"{PROXY}={url}", "--model", MODEL]
    command += ["--mode", "open", "--rate", str(options.rate), "--duration", str(options.duration)]
    command += ["--slice-ms", str(round(options.duration * 1000)), "--warmup-ms", "0"]
    command += ["--timeout-ms", str(options.timeout_ms), "--threads", str(options.loadgen_threads)]
    command += ["--mix", options.mix, "--repeat-pool", str(options.repeat_pool)]
    command += ["--bucket-ms", "1000"]
    if window_ms != 1000:
        command += ["--bucket-ms", str(window_ms)]
    command += ["--header", f"authorization: Bearer {tenant_key}"]
    return command


def scheduled(rate: float, duration: float) -> int:
    """How many requests the load generator's open-loop timetable sends: one target, one
    slice as long as the run (see `loadgen_command`), no warm-up."""
    timetable = OpenTimetable.of(rate, duration, round(duration * 1000), warmup_ms=0, targets=1)
    return timetable.measured_per_target


def check_proxy(url: str, tenant_key: str) -> None:
    """One request, before any load: a 200 with a chat completion."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "ready?"}]}
    headers = {"authorization": f"Bearer {tenant_key}", "cache-control": "no-store"}
    try:
        response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise SoakError(f"the proxy at {url}: {exc.__class__.__name__}: {exc}") from None
    if response.status_code != 200:
        raise SoakError(f"the proxy at {url}: HTTP {response.status_code}: {response.text[:300]}")


def ledger_records(url: str, admin_key: str, expected: int, timeout: float = 15.0) -> int | None:
    """The records of the soak's tenant, once the ledger writer caught up (or as they stand
    when `timeout` runs out); None if the ledger cannot be read."""
    deadline = time.monotonic() + timeout
    count: int | None = None
    while True:
        try:
            response = httpx.get(
                f"{url}/admin/usage", headers={"authorization": f"Bearer {admin_key}"}, timeout=10
            )
            if response.status_code == 200:
                totals = response.json()["tenants"].get(TENANT) or {"requests": 0}
                count = int(totals["requests"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        if (count is not None and count >= expected) or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def run_soak(options: SoakOptions, say: Callable[[str], None]) -> dict[str, Any]:
    bins = ensure_binaries(options, say)
    # Keys of this run only: handed to the proxy through its environment, never written down.
    keys = {"admin": f"sk-soak-admin-{secrets.token_hex(16)}"}
    keys["tenant"] = f"sk-soak-{secrets.token_hex(16)}"
    soak = soak_stack(options, bins, keys, f"soak-{os.getpid()}")
    machine = measuring.machine_info()
    expected = scheduled(options.rate, options.duration)
    watcher: Watcher | None = None
    with signals_as_exceptions():
        try:
            say(f"starting the stack {soak.id}: {', '.join(soak.config.services)}")
            services = soak.up()
            url = services[PROXY].url
            check_proxy(url, keys["tenant"])
            watcher = Watcher(
                services[PROXY].record.pid, options.sample_interval, services[UPSTREAM].port
            )
            before = watcher.sample()
            connections_before = watcher.connections()
            meter = CpuMeter(services[PROXY].record.pid, services[UPSTREAM].record.pid)
            say(
                f"{options.rate:g} req/s for {options.duration:g} s "
                f"({expected:,} requests), mix {options.mix}"
            )
            lines: list[str] = []
            meter.begin()
            watcher.start()
            code = run(
                loadgen_command(bins["loadgen"], url, options, keys["tenant"]),
                on_output=lines.append,
            )
            watcher.stop()
            cpu = meter.end()
            if code != 0:
                tail = "\n".join(lines[-20:])
                raise SoakError(f"the load generator failed (exit code {code}):\n{tail}")
            summary = report.parse_loadgen(lines)
            completed = int(report.target_of(summary)["completed"])
            # The pre-flight request is the tenant's too.
            records = ledger_records(url, keys["admin"], completed + 1)
            time.sleep(1.0)
            after = watcher.sample()
            connections_after = watcher.connections()
            stats = measuring.proxy_stats(url)
        except report.LoadgenOutputError as exc:
            raise SoakError(str(exc)) from None
        finally:
            if watcher is not None:
                watcher.stop()
            say(f"stopping the stack {soak.id}")
            soak.down()
    machine["loadavg_after"] = [round(value, 2) for value in os.getloadavg()]
    fds = {
        "before": before[1] if before else None,
        "after": after[1] if after else None,
        "max": max(watcher.fds) if watcher.fds else None,
        "upstream_connections_before": connections_before.get("upstream"),
        "upstream_connections_after": connections_after.get("upstream"),
        "client_connections_after": connections_after.get("clients"),
    }
    return report.document(
        machine=machine,
        options=options_record(options),
        summary=summary,
        window_ms=round(options.window * 1000),
        rss=watcher.rss,
        fds=fds,
        cpu=cpu,
        ledger_records=None if records is None else records - 1,
        proxy_stats=stats,
        max_rss_growth_kib_per_min=options.max_rss_growth,
        expected=expected,
        notes=notes(options, machine),
    )


def notes(options: SoakOptions, machine: dict[str, Any]) -> list[str]:
    """What to keep in mind when reading the figures."""
    found = [
        "The load generator, the upstream and the proxy share the machine's "
        f"{machine.get('cpus')} CPUs. A stream's latency is its whole length, paced by the "
        f"upstream ({options.chunk_interval_us} us between events).",
    ]
    filled_by = STATS_WINDOW / options.rate
    if options.warmup < filled_by:
        found.append(
            f"Bounded structures are still filling after the {options.warmup:g} s warm-up: "
            f"the cache ({CACHE_ENTRIES:,} entries), the stored responses ({RESPONSE_STORE:,}) "
            f"and the latency window of /stats ({STATS_WINDOW:,} requests, full after "
            f"{filled_by:g} s at this rate). Their growth is in the trend; a run past that "
            f"(e.g. `--duration 240 --warmup {filled_by + 10:g}`) shows the RSS without it."
        )
    before = machine.get("loadavg_before") or [0.0]
    if before[0] > 0.5:
        found.append(
            f"The machine was not idle at the start (load average {before[0]:.2f}): other "
            "work shared its CPUs, and the tails (p99, max) are noisier for it."
        )
    if options.quick:
        found.append("A --quick run: a sanity check rather than figures to quote.")
    return found


def options_record(options: SoakOptions) -> dict[str, Any]:
    record = asdict(options)
    record["results"] = str(options.results)
    record["duration_s"] = options.duration
    record["warmup_s"] = options.warmup
    record["window_s"] = options.window
    record["upstream"] = "fast_upstream (Rust, fixed replies)"
    return record


# --------------------------------------------------------------------------- output


def write_results(result: dict[str, Any], directory: Path, want_plot: bool) -> list[Path]:
    plot = report.plot if want_plot else None
    return measuring.write_results(
        result, directory, ("soak.json", "soak.md", "soak.png"), report.markdown, plot
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    reporter = measuring.Reporter("soak", options.no_color)
    result = reporter.run(lambda say: run_soak(options, say))
    if isinstance(result, int):
        return result
    written = write_results(result, options.results, options.plot)
    if options.plot and not any(path.suffix == ".png" for path in written):
        reporter.say("no soak.png: matplotlib is missing (the `bench` dependency group)")
    reporter.publish(report.markdown(result), written)
    if not result["passed"]:
        reporter.failed("; ".join(result["failures"]))
        return 1
    return 0
