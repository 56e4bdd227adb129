"""The benchmark's pure parts: percentiles, timetable arithmetic, overheads, the result document,
its Markdown rendering and the latency plot. No process is started here (see `harness.perf.bench`).

Figures are microseconds in the data and milliseconds in the tables. A percentile is the nearest
rank of sorted samples, as the load generator (`loadgen` in `proxy/bench/`) computes it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.perf.markdown import table
from harness.perf.results import pyplot, save

SCHEMA_VERSION = 1
DIRECT = "direct"
SWITCHYARD = "switchyard"
SWITCHYARD_CACHE = "switchyard-cache"
# The goals, at 1000 requests per second: the overhead at p50 and at p99.
GOAL_RATE = 1000
GOAL_P50_US = 200.0
GOAL_P99_US = 1000.0
# The percentiles the load generator reports, in the order they are plotted.
PERCENTILES = ("p50", "p90", "p99", "p999", "max")
PERCENTILE_LABELS = {"p50": "p50", "p90": "p90", "p99": "p99", "p999": "p99.9", "max": "max"}
# Below this share of the asked rate, the direct run means the upstream or the load generator
# (not the proxy) was the limit at that rate.
SATURATION_SHARE = 0.95


# --------------------------------------------------------------------------- percentiles


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with at least q% of the values at or
    below it (q=100 is the maximum). Counted in thousandths of a percent with integers, so p99.9
    of 1000 values is the 999th, exactly as the load generator counts. 0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    n = len(ordered)
    units = round(q * 1000)
    rank = min(max(-(-units * n // 100_000), 1), n)
    return float(ordered[rank - 1])


# --------------------------------------------------------------------------- timetables


@dataclass(frozen=True)
class OpenTimetable:
    """The open-loop timetable the load generator follows (the same rounding): per target,
    `warmup` unmeasured requests, then `slices` slices of `per_slice` requests, the targets
    taking turns slice by slice, every request `1/rate` seconds after the previous one."""

    rate: float
    targets: int
    per_slice: int
    slices: int
    warmup: int

    @classmethod
    def of(
        cls, rate: float, duration_s: float, slice_ms: int, warmup_ms: int, targets: int
    ) -> OpenTimetable:
        per_slice = max(1, _round_half_away(rate * slice_ms / 1000))
        wanted = max(1, _round_half_away(rate * duration_s))
        return cls(
            rate=rate,
            targets=max(1, targets),
            per_slice=per_slice,
            slices=-(-wanted // per_slice),
            warmup=_round_half_away(rate * warmup_ms / 1000),
        )

    @property
    def measured_per_target(self) -> int:
        return self.per_slice * self.slices

    @property
    def sent_per_target(self) -> int:
        """Every request a target gets, warm-up included (what its CPU time is divided by)."""
        return self.warmup + self.measured_per_target

    @property
    def total(self) -> int:
        return self.sent_per_target * self.targets

    @property
    def seconds(self) -> float:
        """How long the timetable runs (the last answers may trail it)."""
        return self.total / self.rate

    def target_of(self, j: int) -> int | None:
        """The target of request j during the measured part, None during the warm-up."""
        warm = self.warmup * self.targets
        if j < warm:
            return None
        return ((j - warm) // self.per_slice) % self.targets


def _round_half_away(value: float) -> int:
    """Rust's `f64::round` (half away from zero), not Python's banker's rounding."""
    return math.floor(abs(value) + 0.5) * (1 if value >= 0 else -1)


def closed_seconds(duration_s: float, slice_ms: int, warmup_ms: int, targets: int) -> float:
    """How long a closed-loop run takes: a warm-up slice and whole measured slices per target."""
    slice_ms = max(1, slice_ms)
    slices = -(-max(1, _round_half_away(duration_s * 1000)) // slice_ms)
    return targets * (warmup_ms + slices * slice_ms) / 1000


# --------------------------------------------------------------------------- overheads


def overhead(direct: Mapping[str, Any], proxied: Mapping[str, Any]) -> dict[str, float]:
    """What the proxy adds at each percentile: its latency summary minus the direct one (us).
    A difference of percentiles, not a percentile of per-request differences (those cannot be
    observed: a request goes either direct or through the proxy)."""
    return {
        key: round(float(proxied[key]) - float(direct[key]), 1)
        for key in PERCENTILES
        if key in direct and key in proxied
    }


def cpu_per_request_us(cpu_seconds: float, requests: int) -> float | None:
    """Process CPU time (user + system) per request, in microseconds."""
    if requests <= 0:
        return None
    return round(cpu_seconds * 1e6 / requests, 1)


def goal_check(open_loop: Sequence[Mapping[str, Any]], target: str = SWITCHYARD) -> dict[str, Any]:
    """The issue's goal at 1000 req/s: overhead p50 <= 0.2 ms and p99 <= 1 ms."""
    check: dict[str, Any] = {
        "rate": GOAL_RATE,
        "p50_goal_us": GOAL_P50_US,
        "p99_goal_us": GOAL_P99_US,
        "measured": False,
    }
    for run in open_loop:
        if run["rate"] == GOAL_RATE and target in run.get("overhead", {}):
            added = run["overhead"][target]
            check.update(
                measured=True,
                p50_overhead_us=added["p50"],
                p99_overhead_us=added["p99"],
                p50_met=added["p50"] <= GOAL_P50_US,
                p99_met=added["p99"] <= GOAL_P99_US,
            )
    return check


def noise_notes(
    open_loop: Sequence[Mapping[str, Any]], control: str = "control", limit_us: float = 100.0
) -> list[str]:
    """Where the A/A control (a second copy of the upstream, measured like a proxy) differs
    from direct by more than `limit_us` at p50 or p99: overheads that size are noise there."""
    found = []
    for run in open_loop:
        added = run.get("overhead", {}).get(control)
        if not added:
            continue
        noisy = [key for key in ("p50", "p99") if abs(added[key]) > limit_us]
        if noisy:
            figures = ", ".join(f"{key} {ms(added[key], signed=True)} ms" for key in noisy)
            found.append(
                f"At {run['rate']:g}/s the control differs from direct by {figures}: "
                "differences of that size are noise at that rate (a stall on the machine)."
            )
    return found


def saturated(rate: float, achieved_rps: float) -> bool:
    return achieved_rps < SATURATION_SHARE * rate


# --------------------------------------------------------------------------- the result document


def by_name(loadgen_summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The load generator's per-target reports, keyed by target name."""
    return {target["name"]: dict(target) for target in loadgen_summary["targets"]}


def open_loop_entry(
    rate: float,
    loadgen_summary: Mapping[str, Any],
    cpu_us: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """One rate of the open-loop run: the targets' figures and each proxy's overhead."""
    targets = by_name(loadgen_summary)
    direct = targets.get(DIRECT)
    overheads = {}
    if direct is not None:
        for name, figures in targets.items():
            if name != DIRECT:
                overheads[name] = overhead(direct["latency_us"], figures["latency_us"])
    return {
        "rate": rate,
        "targets": targets,
        "overhead": overheads,
        "cpu_us_per_request": dict(cpu_us or {}),
        "direct_saturated": direct is not None and saturated(rate, direct["achieved_rps"]),
        "wall_s": loadgen_summary.get("wall_s"),
    }


def stream_entry(rate: float, loadgen_summary: Mapping[str, Any]) -> dict[str, Any]:
    """The streaming run: per target TTFT and gaps, and what each proxy adds to them."""
    targets = by_name(loadgen_summary)
    direct = targets.get(DIRECT)
    added: dict[str, dict[str, float]] = {}
    if direct is not None and direct.get("ttft_us"):
        for name, figures in targets.items():
            if name == DIRECT or not figures.get("ttft_us"):
                continue
            ttft = overhead(direct["ttft_us"], figures["ttft_us"])
            gap = overhead(direct["gap_us"], figures["gap_us"])
            added[name] = {
                "ttft_p50_us": ttft["p50"],
                "ttft_p99_us": ttft["p99"],
                "gap_p50_us": gap["p50"],
                "gap_p99_us": gap["p99"],
                "gap_max_us": gap["max"],
            }
    return {"rate": rate, "targets": targets, "added": added}


def cache_entry(rate: float, loadgen_summary: Mapping[str, Any]) -> dict[str, Any]:
    """The cache-hit run: hit latency against the upstream and against the uncached proxy."""
    targets = by_name(loadgen_summary)
    entry: dict[str, Any] = {"rate": rate, "targets": targets}
    cached = targets.get(SWITCHYARD_CACHE)
    if cached is not None:
        entry["hit_ratio"] = round(cached["cache_hits"] / cached["ok"], 4) if cached["ok"] else 0
        for name in (DIRECT, SWITCHYARD):
            if name in targets:
                entry[f"vs_{name}"] = overhead(targets[name]["latency_us"], cached["latency_us"])
    return entry


def memory_entry(idle: int | None, during: Sequence[int], after: int | None) -> dict[str, Any]:
    """RSS in MiB: idle before the load, the median and the peak during it, and after it."""

    def mib(value: float | None) -> float | None:
        return None if value is None else round(value / 2**20, 1)

    return {
        "idle_mib": mib(idle),
        "load_p50_mib": mib(percentile(during, 50)) if during else None,
        "peak_mib": mib(max(during)) if during else None,
        "after_mib": mib(after),
        "samples": len(during),
    }


def document(
    *,
    machine: Mapping[str, Any],
    options: Mapping[str, Any],
    targets: Sequence[Mapping[str, Any]],
    open_loop: Sequence[Mapping[str, Any]],
    closed_loop: Mapping[str, Any] | None,
    streaming: Mapping[str, Any] | None,
    cache: Mapping[str, Any] | None,
    memory: Mapping[str, Any],
    proxy_stats: Mapping[str, Any] | None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole result, as written to bench.json."""
    return {
        "schema": SCHEMA_VERSION,
        "machine": dict(machine),
        "options": dict(options),
        "targets": [dict(target) for target in targets],
        "open_loop": [dict(run) for run in open_loop],
        "closed_loop": dict(closed_loop) if closed_loop else None,
        "streaming": dict(streaming) if streaming else None,
        "cache": dict(cache) if cache else None,
        "memory": dict(memory),
        "proxy_stats": dict(proxy_stats) if proxy_stats else None,
        "goal": goal_check(open_loop),
        "notes": list(notes),
    }


# --------------------------------------------------------------------------- Markdown


def ms(us: float | None, signed: bool = False) -> str:
    """Microseconds as milliseconds with three decimals ("-" when missing)."""
    if us is None:
        return "-"
    return f"{us / 1000:+.3f}" if signed else f"{us / 1000:.3f}"


def _errors(figures: Mapping[str, Any]) -> str:
    if not figures["errors"]:
        return "0"
    kinds = ", ".join(f"{kind} {count}" for kind, count in figures["error_kinds"].items())
    return f"{figures['errors']} ({kinds})"


def _open_loop(result: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Open loop: latency by rate (ms)", ""]
    header = ["rate/s", "target", "achieved/s", "errors", "p50", "p90", "p99", "max"]
    header += ["overhead p50", "overhead p99", "CPU us/req", "gen lag p99"]
    rows = []
    for run in result["open_loop"]:
        for name, figures in run["targets"].items():
            latency = figures["latency_us"]
            added = run["overhead"].get(name, {})
            cpu = run.get("cpu_us_per_request", {}).get(name)
            rows.append(
                [
                    f"{run['rate']:g}",
                    name,
                    f"{figures['achieved_rps']:.0f}",
                    _errors(figures),
                    ms(latency["p50"]),
                    ms(latency["p90"]),
                    ms(latency["p99"]),
                    ms(latency["max"]),
                    ms(added.get("p50"), signed=True) if added else "",
                    ms(added.get("p99"), signed=True) if added else "",
                    "" if cpu is None else f"{cpu:.0f}",
                    ms(figures["send_lag_us"]["p99"]),
                ]
            )
    lines += table(header, rows)
    saturated_rates = [f"{run['rate']:g}" for run in result["open_loop"] if run["direct_saturated"]]
    if saturated_rates:
        lines += [
            "",
            f"Direct runs below {SATURATION_SHARE:.0%} of the asked rate at "
            f"{', '.join(saturated_rates)}/s: the upstream or the load generator was the limit.",
        ]
    goal = result.get("goal") or {}
    if goal.get("measured"):
        verdict = "met" if goal["p50_met"] and goal["p99_met"] else "NOT met"
        lines += [
            "",
            f"Goal at {goal['rate']}/s (overhead p50 <= {ms(goal['p50_goal_us'])} ms, "
            f"p99 <= {ms(goal['p99_goal_us'])} ms): {verdict} "
            f"(p50 {ms(goal['p50_overhead_us'], signed=True)} ms, "
            f"p99 {ms(goal['p99_overhead_us'], signed=True)} ms).",
        ]
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    """The result as Markdown tables (latencies in ms, overheads signed)."""
    machine = result["machine"]
    lines = [
        "# Switchyard benchmark",
        "",
        f"{machine.get('cpus', '?')} CPUs ({machine.get('cpu_model', 'unknown CPU')}), "
        f"load average before {_loadavg(machine.get('loadavg_before'))}, "
        f"after {_loadavg(machine.get('loadavg_after'))}. "
        "Latency runs from each request's scheduled send time (open loop).",
    ]
    if result["open_loop"]:
        lines += _open_loop(result)
    closed = result.get("closed_loop")
    if closed:
        lines += ["", f"## Closed loop: throughput at concurrency {closed['concurrency']}", ""]
        rows = [
            [
                name,
                f"{figures['achieved_rps']:.0f}",
                _errors(figures),
                ms(figures["latency_us"]["p50"]),
                ms(figures["latency_us"]["p99"]),
            ]
            for name, figures in closed["targets"].items()
        ]
        lines += table(["target", "requests/s", "errors", "p50", "p99"], rows)
    streaming = result.get("streaming")
    if streaming:
        lines += ["", f"## Streaming at {streaming['rate']:g}/s (ms)", ""]
        rows = []
        for name, figures in streaming["targets"].items():
            added = streaming["added"].get(name, {})
            ttft, gap = figures.get("ttft_us") or {}, figures.get("gap_us") or {}
            rows.append(
                [
                    name,
                    _errors(figures),
                    ms(ttft.get("p50")),
                    ms(ttft.get("p99")),
                    ms(gap.get("p50")),
                    ms(gap.get("p99")),
                    ms(gap.get("max")),
                    ms(added.get("ttft_p50_us"), signed=True) if added else "",
                    ms(added.get("ttft_p99_us"), signed=True) if added else "",
                    ms(added.get("gap_p50_us"), signed=True) if added else "",
                    ms(added.get("gap_p99_us"), signed=True) if added else "",
                ]
            )
        header = ["target", "errors", "TTFT p50", "TTFT p99", "gap p50", "gap p99", "gap max"]
        header += ["added TTFT p50", "added TTFT p99", "added gap p50", "added gap p99"]
        lines += table(header, rows)
    cache = result.get("cache")
    if cache:
        lines += ["", f"## Cache hits at {cache['rate']:g}/s (ms)", ""]
        rows = []
        for name, figures in cache["targets"].items():
            latency = figures["latency_us"]
            hits = f"{figures['cache_hits']}/{figures['ok']}"
            figures_ms = [ms(latency[key]) for key in ("p50", "p99", "max")]
            rows.append([name, hits, _errors(figures), *figures_ms])
        lines += table(["target", "hits", "errors", "p50", "p99", "max"], rows)
        for name in (DIRECT, SWITCHYARD):
            versus = cache.get(f"vs_{name}")
            if versus:
                lines += [
                    "",
                    f"A cache hit against {name}: p50 {ms(versus['p50'], signed=True)} ms, "
                    f"p99 {ms(versus['p99'], signed=True)} ms.",
                ]
    if result.get("memory"):
        lines += ["", "## Memory (RSS, MiB)", ""]
        rows = [
            [
                name,
                _mib(figures["idle_mib"]),
                _mib(figures["load_p50_mib"]),
                _mib(figures["peak_mib"]),
                _mib(figures["after_mib"]),
            ]
            for name, figures in result["memory"].items()
        ]
        lines += table(["process", "idle", "under load (p50)", "peak", "after"], rows)
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _loadavg(values: Sequence[float] | None) -> str:
    return "?" if not values else "/".join(f"{value:.2f}" for value in values)


# --------------------------------------------------------------------------- the plot


def plot(result: Mapping[str, Any], path: Path) -> bool:
    """Latency percentiles per rate, every target on one panel per rate (log scale), as a PNG.
    False when matplotlib is not installed (the `bench` dependency group)."""
    plt = pyplot()
    runs = result["open_loop"]
    if plt is None or not runs:
        return False
    columns = min(len(runs), 4)
    rows = -(-len(runs) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False, sharey=True
    )
    labels = [PERCENTILE_LABELS[key] for key in PERCENTILES]
    for index, run in enumerate(runs):
        axis = axes[index // columns][index % columns]
        for name, figures in run["targets"].items():
            values = [figures["latency_us"][key] / 1000 for key in PERCENTILES]
            style = "o--" if name == DIRECT else "o-"
            axis.plot(labels, values, style, label=name)
        axis.set_title(f"{run['rate']:g} req/s")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.set_xlabel("percentile")
        if index % columns == 0:
            axis.set_ylabel("latency (ms, from scheduled send)")
    for index in range(len(runs), rows * columns):
        axes[index // columns][index % columns].axis("off")
    axes[0][0].legend()
    figure.suptitle("Latency percentiles: direct to the upstream against through the proxy")
    return save(plt, figure, path)
