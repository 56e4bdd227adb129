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
import contextlib
import functools
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.perf import measuring
from harness.perf import soak_report as report
from harness.perf.bench_report import OpenTimetable
from harness.perf.results import Results
from harness.perf.sampler import CpuMeter, Reading, Sampler, connections
from harness.runtime import paths
from harness.runtime.config import toml_document
from harness.runtime.poll import WaitTimeout, wait_until
from harness.runtime.process import ProcessError
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
    sections = {
        "server": {
            "bind": "127.0.0.1",
            "port": 0,
            "shutdown_grace_ms": 2000,
            "response_store_capacity": RESPONSE_STORE,
        },
        "cache": {"backend": "memory", "ttl_seconds": 3600, "max_entries": CACHE_ENTRIES},
        "ledger": {"backend": "sqlite", "path": "soak-ledger.sqlite3"},
        "auth": {
            "admin_key_env": "SOAK_ADMIN_KEY",
            "keys": [{"tenant": TENANT, "key_env": "SOAK_TENANT_KEY"}],
        },
        "upstreams": [{"name": "fast", "base_url": "${upstream.url}/v1", "responses": False}],
        "models": [{"name": MODEL, "upstreams": ["fast"]}],
        "prices": {MODEL: {"input": 0.15, "output": 0.60}},
        "slo": {"latency_window": STATS_WINDOW},
    }
    return toml_document(sections, comment="Rendered by the soak (harness.perf.soak).")


def soak_stack(
    options: SoakOptions, bins: dict[str, Path], keys: dict[str, str], stack_id: str
) -> Stack:
    services = {
        UPSTREAM: measuring.upstream_service(
            UPSTREAM, bins, options.chunk_interval_us, options.upstream_workers
        ),
        PROXY: measuring.proxy_service(PROXY, bins, options.proxy_log),
    }
    soak = measuring.own_stack("soak", services, PROXY, stack_id)
    soak.config_texts[PROXY] = proxy_config()
    soak.extra_env[PROXY] = {
        "SOAK_ADMIN_KEY": keys["admin"],
        "SOAK_TENANT_KEY": keys["tenant"],
    }
    return soak


def ensure_binaries(options: SoakOptions, say: Callable[[str], None]) -> dict[str, Path]:
    return measuring.ensure_release_binaries(options.build, say, SoakError)


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
    measuring.check_ready(url, f"the proxy at {url}", body, SoakError, headers)


def ledger_records(url: str, admin_key: str, expected: int, timeout: float = 15.0) -> int | None:
    """The records of the soak's tenant, once the ledger writer caught up (or as they stand
    when `timeout` runs out); None if the ledger cannot be read."""
    seen: list[int] = []

    def caught_up() -> bool:
        try:
            response = httpx.get(
                f"{url}/admin/usage", headers={"authorization": f"Bearer {admin_key}"}, timeout=10
            )
            if response.status_code == 200:
                totals = response.json()["tenants"].get(TENANT) or {"requests": 0}
                seen.append(int(totals["requests"]))
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        return bool(seen) and seen[-1] >= expected

    with contextlib.suppress(WaitTimeout):  # then the records as they stand
        wait_until(caught_up, what="the ledger", timeout=timeout, first=0.2, cap=0.2)
    return seen[-1] if seen else None


def run_soak(options: SoakOptions, say: Callable[[str], None]) -> dict[str, Any]:
    bins = ensure_binaries(options, say)
    # Keys of this run only: handed to the proxy through its environment, never written down.
    keys = {"admin": f"sk-soak-admin-{secrets.token_hex(16)}"}
    keys["tenant"] = f"sk-soak-{secrets.token_hex(16)}"
    soak = soak_stack(options, bins, keys, f"soak-{os.getpid()}")
    machine = measuring.machine_info()
    expected = scheduled(options.rate, options.duration)
    with measuring.stack_running(soak, say) as services:
        url = services[PROXY].url
        check_proxy(url, keys["tenant"])
        proxy_pid, upstream_port = services[PROXY].record.pid, services[UPSTREAM].port
        sampler = Sampler(
            {PROXY: proxy_pid}, options.sample_interval, tree=False, fds=True, at_start=True
        )
        before = sampler.now()[PROXY]
        connections_before = connections(proxy_pid, upstream_port)
        meter = CpuMeter(proxy_pid, services[UPSTREAM].record.pid)
        say(
            f"{options.rate:g} req/s for {options.duration:g} s "
            f"({expected:,} requests), mix {options.mix}"
        )
        command = loadgen_command(bins["loadgen"], url, options, keys["tenant"])
        meter.begin()
        with sampler:
            summary = measuring.run_loadgen(command, SoakError)
        cpu = meter.end()
        completed = int(report.target_of(summary)["completed"])
        # The pre-flight request is the tenant's too.
        records = ledger_records(url, keys["admin"], completed + 1)
        time.sleep(1.0)  # not a wait for anything: the RSS after the load has settled
        after = sampler.now()[PROXY]
        connections_after = connections(proxy_pid, upstream_port)
        stats = measuring.proxy_stats(url)
    machine["loadavg_after"] = [round(value, 2) for value in os.getloadavg()]
    samples = sampler.samples[PROXY]
    fds = {
        "before": _fds(before),
        "after": _fds(after),
        "max": max(_fds(reading) or 0 for _, reading in samples) if samples else None,
        "upstream_connections_before": connections_before.get("upstream"),
        "upstream_connections_after": connections_after.get("upstream"),
        "client_connections_after": connections_after.get("clients"),
    }
    return report.document(
        machine=machine,
        options=options_record(options),
        summary=summary,
        window_ms=round(options.window * 1000),
        rss=[(at, reading.rss) for at, reading in samples],
        fds=fds,
        cpu=cpu,
        ledger_records=None if records is None else records - 1,
        proxy_stats=stats,
        max_rss_growth_kib_per_min=options.max_rss_growth,
        expected=expected,
        notes=notes(options, machine),
    )


def _fds(reading: Reading | None) -> int | None:
    return None if reading is None else reading.fds


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
    found += measuring.busy_note(machine)
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


RESULTS = Results("soak.json", "soak.md", "soak.png", report.markdown, report.plot)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    measure = functools.partial(run_soak, options)
    return measuring.main("soak", options.no_color, measure, RESULTS, options.results, options.plot)
