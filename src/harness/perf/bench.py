"""The benchmark: how little `switchyard` adds over calling its upstream directly.

`scripts/bench.py`, `invoke bench` and `nox -s bench` all call `main`. Everything runs under the
process manager, as one stack of its own (`bench-<pid>`, owned by this process): the fast
fixed-response upstream (`fast_upstream` in `proxy/bench/`), switchyard with the cache off,
switchyard with the memory cache (for the cache-hit run only), and any other proxy given with
`--proxy-cmd`. The load generator (`loadgen` in `proxy/bench/`) runs in the foreground through
`harness.runtime.process.run`, once per phase, with every target interleaved slice by slice:

1. open loop at each rate (default 100, 500, 1000, 2000 req/s): latency from the scheduled send
   time, the achieved rate, errors, the proxy's overhead at each percentile and its CPU time per
   request;
2. closed loop at a fixed concurrency: the maximum throughput;
3. streaming: what the proxy adds to the time to first event and to the gaps between events;
4. the cache path: the latency of a cache hit.

The proxy's RSS is sampled before, during and after the load. The result goes to stdout as
Markdown and to `--results` (default `reports/bench/`) as bench.json, bench.md and latency.png.
Everything started is stopped at the end, on Ctrl-C and SIGTERM too. The options are in
`harness.perf.bench_options`.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.perf import bench_report as report
from harness.perf import measuring
from harness.perf.bench_options import CONTROL, UPSTREAM, BenchOptions, parse_args, stack_command
from harness.perf.results import Results
from harness.perf.sampler import Reading, Sampler, cpu_seconds
from harness.runtime.config import ServiceConfig, toml_document
from harness.runtime.process import HealthCheck, ProcessError
from harness.runtime.stack import Stack

BINARIES = measuring.BINARIES


class BenchError(ProcessError):
    """The benchmark could not run: a target misbehaves, or the load generator failed."""


# --------------------------------------------------------------------------- the stack


def proxy_config(model: str, cache: bool) -> str:
    """switchyard's config: the fast upstream only, in-memory ledger; cache off or in memory.
    `${upstream.url}` is filled in by the stack once the upstream has its port."""
    cache_table = (
        {"backend": "memory", "ttl_seconds": 3600, "max_entries": 10000}
        if cache
        else {"backend": "off"}
    )
    sections = {
        "server": {"bind": "127.0.0.1", "port": 0, "shutdown_grace_ms": 2000},
        "cache": cache_table,
        "ledger": {"backend": "memory"},
        "upstreams": [{"name": "fast", "base_url": "${upstream.url}/v1", "responses": False}],
        "models": [{"name": model, "upstreams": ["fast"]}],
    }
    return toml_document(sections, comment="Rendered by the benchmark (harness.perf.bench).")


def bench_stack(options: BenchOptions, bins: dict[str, Path], stack_id: str) -> Stack:
    """The benchmark's own stack: upstream, switchyard, switchyard-cache, other proxies."""
    upstream = (options.chunk_interval_us, options.upstream_workers)
    services = {
        UPSTREAM: measuring.upstream_service(UPSTREAM, bins, *upstream),
        report.SWITCHYARD: measuring.proxy_service(report.SWITCHYARD, bins, options.proxy_log),
        report.SWITCHYARD_CACHE: measuring.proxy_service(
            report.SWITCHYARD_CACHE, bins, options.proxy_log
        ),
    }
    if options.control:
        services[CONTROL] = measuring.upstream_service(CONTROL, bins, *upstream)
    for other in options.others:
        if other.command is not None:
            services[other.name] = ServiceConfig(
                name=other.name,
                command=stack_command(other.command),
                health=HealthCheck.parse(other.health),
                port="pick",
                startup_timeout=60.0,
            )
    bench = measuring.own_stack("benchmark", services, report.SWITCHYARD, stack_id)
    bench.config_texts[report.SWITCHYARD] = proxy_config(options.model, cache=False)
    bench.config_texts[report.SWITCHYARD_CACHE] = proxy_config(options.model, cache=True)
    return bench


def ensure_binaries(options: BenchOptions, say: Callable[[str], None]) -> dict[str, Path]:
    return measuring.ensure_release_binaries(options.build, say, BenchError)


# --------------------------------------------------------------------------- measuring


@dataclass
class Loadgen:
    """Runs the load generator in the foreground and returns its JSON summary."""

    binary: Path
    options: BenchOptions
    say: Callable[[str], None]

    def __call__(self, targets: Sequence[tuple[str, str]], *extra: str) -> dict[str, Any]:
        command = [str(self.binary)]
        for name, url in targets:
            command += ["--target", f"{name}={url}"]
        command += ["--model", self.options.model, "--timeout-ms", str(self.options.timeout_ms)]
        command += ["--threads", str(self.options.loadgen_threads), *extra]
        return measuring.run_loadgen(command, BenchError)


def check_target(name: str, url: str, model: str) -> None:
    """One request, before any load: a 200 with a chat completion and its usage."""
    body = {"model": model, "messages": [{"role": "user", "content": "ready?"}]}
    response = measuring.check_ready(url, f"{name} at {url}", body, BenchError)
    try:
        reply = response.json()
        usage_ok = reply["usage"]["total_tokens"] > 0 and reply["choices"]
    except (ValueError, KeyError, TypeError):
        usage_ok = False
    if not usage_ok:
        raise BenchError(f"{name} at {url}: no chat completion with usage: {response.text[:300]}")


def estimate_seconds(options: BenchOptions, targets: int) -> float:
    """How long the phases take, from their timetables (start-up and build not included)."""
    slices = (options.slice_ms, options.warmup_ms)
    seconds = 0.0
    if "open" in options.phases:
        seconds += sum(
            report.OpenTimetable.of(rate, options.duration, *slices, targets).seconds
            for rate in options.rates
        )
    if "closed" in options.phases:
        seconds += report.closed_seconds(options.closed_duration, *slices, targets)
    if "stream" in options.phases:
        rate, duration = options.stream_rate, options.stream_duration
        seconds += report.OpenTimetable.of(rate, duration, *slices, targets).seconds
    if "cache" in options.phases:
        rate, duration = options.cache_rate, options.cache_duration
        seconds += report.OpenTimetable.of(rate, duration, *slices, 3).seconds
    return round(seconds, 1)


# --------------------------------------------------------------------------- the run


def run_bench(options: BenchOptions, say: Callable[[str], None]) -> dict[str, Any]:
    bins = ensure_binaries(options, say)
    bench = bench_stack(options, bins, f"bench-{os.getpid()}")
    machine = measuring.machine_info()
    with measuring.stack_running(bench, say) as services:
        urls = {name: service.url for name, service in services.items()}
        targets = [(report.DIRECT, urls[UPSTREAM])]
        targets += [(report.SWITCHYARD, urls[report.SWITCHYARD])]
        targets += [(CONTROL, urls[CONTROL])] if options.control else []
        targets += [(other.name, other.url or urls[other.name]) for other in options.others]
        cache_targets = [*targets[:2], (report.SWITCHYARD_CACHE, urls[report.SWITCHYARD_CACHE])]
        for name, url in [*targets, cache_targets[-1]]:
            check_target(name, url, options.model)
        started_pids = {
            name: services[name].record.pid
            for name, _ in targets
            if name in services and name != report.DIRECT
        }
        sampler = Sampler(started_pids)
        idle = sampler.now()
        say(f"the load takes about {estimate_seconds(options, len(targets)):.0f} s")
        loadgen = Loadgen(bins["loadgen"], options, say)
        with sampler:
            phases = run_phases(loadgen, options, targets, cache_targets, started_pids, say)
        time.sleep(1.0)  # not a wait for anything: the RSS after the load has settled
        after = sampler.now()
        stats = measuring.proxy_stats(urls[report.SWITCHYARD])
    machine["loadavg_after"] = [round(value, 2) for value in os.getloadavg()]
    memory = {
        name: report.memory_entry(_rss(idle[name]), sampler.rss(name), _rss(after[name]))
        for name in started_pids
    }
    described = [{"name": name, "url": url} for name, url in targets]
    return report.document(
        machine=machine,
        options=options_record(options),
        targets=described,
        memory=memory,
        proxy_stats=stats,
        notes=notes(machine, options) + report.noise_notes(phases["open_loop"], CONTROL),
        **phases,
    )


def _rss(reading: Reading | None) -> int | None:
    return None if reading is None else reading.rss


def run_phases(
    loadgen: Loadgen,
    options: BenchOptions,
    targets: Sequence[tuple[str, str]],
    cache_targets: Sequence[tuple[str, str]],
    pids: dict[str, int],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The phases asked for, as the result document's open_loop, closed_loop, streaming and
    cache entries (None for a phase left out)."""
    open_loop = [
        open_loop_run(loadgen, options, rate, targets, pids, say)
        for rate in (options.rates if "open" in options.phases else [])
    ]
    phases: dict[str, Any] = {"open_loop": open_loop}
    phases["closed_loop"] = phases["streaming"] = phases["cache"] = None
    if "closed" in options.phases:
        say(f"closed loop, concurrency {options.concurrency}")
        concurrency = ["--concurrency", str(options.concurrency)]
        timing = phase_args(options, options.closed_duration)
        closed = loadgen(targets, *timing, "--mode", "closed", *concurrency)
        phases["closed_loop"] = {
            "concurrency": options.concurrency,
            "targets": report.by_name(closed),
            "wall_s": closed.get("wall_s"),
        }
    if "stream" in options.phases:
        say(f"streaming, {options.stream_rate:g} streams/s")
        rate, duration = options.stream_rate, options.stream_duration
        summary = rated(loadgen, options, targets, rate, duration, "--stream")
        phases["streaming"] = report.stream_entry(rate, summary)
    if "cache" in options.phases:
        say(f"cache hits, {options.cache_rate:g} req/s")
        rate, duration = options.cache_rate, options.cache_duration
        phases["cache"] = report.cache_entry(
            rate, rated(loadgen, options, cache_targets, rate, duration)
        )
    return phases


def phase_args(options: BenchOptions, duration: float) -> list[str]:
    return [
        "--duration",
        str(duration),
        "--slice-ms",
        str(options.slice_ms),
        "--warmup-ms",
        str(options.warmup_ms),
    ]


def rated(
    loadgen: Loadgen,
    options: BenchOptions,
    targets: Sequence[tuple[str, str]],
    rate: float,
    duration: float,
    *extra: str,
) -> dict[str, Any]:
    """An open-loop phase at `rate` for `duration` seconds per target."""
    return loadgen(targets, *phase_args(options, duration), "--rate", str(rate), *extra)


def open_loop_run(
    loadgen: Loadgen,
    options: BenchOptions,
    rate: float,
    targets: Sequence[tuple[str, str]],
    pids: dict[str, int],
    say: Callable[[str], None],
) -> dict[str, Any]:
    say(f"open loop, {rate:g} req/s, {options.duration:g} s per target")
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    summary = rated(loadgen, options, targets, rate, options.duration)
    timetable = report.OpenTimetable.of(
        rate, options.duration, options.slice_ms, options.warmup_ms, len(targets)
    )
    cpu = {
        name: report.cpu_per_request_us(
            cpu_seconds(pid) - cpu_before[name], timetable.sent_per_target
        )
        for name, pid in pids.items()
    }
    entry = report.open_loop_entry(rate, summary, cpu)
    for name, added in entry["overhead"].items():
        say(
            f"  {name}: overhead p50 {report.ms(added['p50'], True)} ms, "
            f"p99 {report.ms(added['p99'], True)} ms"
        )
    return entry


def options_record(options: BenchOptions) -> dict[str, Any]:
    record = asdict(options)
    record["results"] = str(options.results)
    record["others"] = [asdict(other) for other in options.others]
    return record


def notes(machine: dict[str, Any], options: BenchOptions) -> list[str]:
    found = [
        "The load generator, the upstream and the proxies share the machine's "
        f"{machine.get('cpus')} CPUs; overhead = proxy percentile minus direct percentile, "
        "measured interleaved in the same run.",
    ]
    found += measuring.busy_note(machine)
    if options.control:
        found.append(
            f"`{CONTROL}` is a second copy of the upstream measured like a proxy: what it "
            "adds over direct is the noise floor of the overhead figures."
        )
    if options.quick:
        found.append("A --quick run: short phases, a sanity check rather than figures to quote.")
    return found


# --------------------------------------------------------------------------- output


RESULTS = Results(
    "bench.json",
    "bench.md",
    "latency.png",
    report.markdown,
    report.plot,
    expects_plot=lambda result: bool(result["open_loop"]),
)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    measure = functools.partial(run_bench, options)
    return measuring.main(
        "bench", options.no_color, measure, RESULTS, options.results, options.plot
    )
