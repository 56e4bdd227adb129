"""The soak's pure parts: the target of the load generator's summary, the RSS trend, the latency
windows, the verdict, the Markdown and the plot. No process is started here (see
`harness.perf.soak`).

Latencies are microseconds in the data (as `loadgen` in `proxy/bench/` reports them) and
milliseconds in the tables; RSS is bytes in the data, MiB and KiB in the tables.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.perf.bench_report import percentile
from harness.perf.markdown import table
from harness.perf.results import pyplot, save

SCHEMA_VERSION = 1
PERCENTILES = ("p50", "p90", "p99", "max")
# With a mix, the load generator splits each bucket into these two classes: a stream's latency
# is its whole length (paced by the upstream), a different quantity from a whole answer's.
CLASSES = ("non_streaming", "streaming")
KIB = 1024
MIB = 1024 * 1024


# --------------------------------------------------------------------------- load generator


def target_of(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of the (only) target of a summary."""
    return dict(summary["targets"][0])


def timeline(target: Mapping[str, Any], bucket_ms: int) -> list[dict[str, Any]]:
    """The target's buckets of that width, or [] when it has none."""
    for entry in target.get("timelines") or []:
        if entry.get("bucket_ms") == bucket_ms:
            return list(entry["buckets"])
    return []


def _percentiles(figures: Mapping[str, Any] | None) -> dict[str, float] | None:
    if not figures or not figures.get("ok"):
        return None
    latency = figures.get("latency_us") or {}
    return {key: float(latency.get(key, 0.0)) for key in PERCENTILES}


def window_rows(buckets: Sequence[Mapping[str, Any]], bucket_s: float) -> list[dict[str, Any]]:
    """One row per bucket: when it starts, requests, rate, errors, latency percentiles (us) of
    all its requests and, with a mix, of its non-streaming and streaming ones apart (None when
    the bucket has none of them)."""
    rows = []
    for bucket in buckets:
        latency = bucket.get("latency_us") or {}
        row: dict[str, Any] = {
            "start_s": float(bucket["start_s"]),
            "requests": int(bucket["completed"]),
            "rps": round(int(bucket["completed"]) / bucket_s, 1) if bucket_s > 0 else 0.0,
            "errors": int(bucket["errors"]),
            "cache_hits": int(bucket.get("cache_hits", 0)),
            **{key: float(latency.get(key, 0.0)) for key in PERCENTILES},
        }
        for name in CLASSES:
            row[name] = _percentiles(bucket.get(name))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- RSS


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """The slope of the least-squares line through (x, y) points; None with fewer than two
    distinct x values."""
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = zip(*points, strict=True)
    return float(statistics.linear_regression(xs, ys).slope)


def rss_trend(
    samples: Sequence[tuple[float, int]], warmup_s: float, window_s: float
) -> dict[str, Any]:
    """How the RSS moved after the warm-up: the least-squares slope (KiB per minute) and the
    medians of the first and the last `window_s` of the post-warm-up samples (KiB apart).

    `samples` are (seconds since the load began, RSS in bytes). Before the warm-up, caches and
    pools fill up, so that growth is not a leak: it is left out of the trend.
    """
    after = [(t, rss) for t, rss in samples if t >= warmup_s]
    slope = least_squares_slope([(t / 60.0, rss / KIB) for t, rss in after])
    first = [rss for t, rss in after if t < after[0][0] + window_s] if after else []
    last = [rss for t, rss in after if t > after[-1][0] - window_s] if after else []
    first_median = percentile(first, 50) if first else None
    last_median = percentile(last, 50) if last else None
    growth = (
        (last_median - first_median) / KIB
        if first_median is not None and last_median is not None
        else None
    )
    every = [rss for _, rss in samples]
    return {
        "warmup_s": warmup_s,
        "window_s": window_s,
        "samples": len(samples),
        "samples_after_warmup": len(after),
        "start_bytes": every[0] if every else None,
        "end_bytes": every[-1] if every else None,
        "min_bytes": min(every) if every else None,
        "max_bytes": max(every) if every else None,
        "slope_kib_per_min": None if slope is None else round(slope, 1),
        "first_window_median_bytes": first_median,
        "last_window_median_bytes": last_median,
        "first_to_last_kib": None if growth is None else round(growth, 1),
    }


# --------------------------------------------------------------------------- verdict


def verdict(
    errors: int,
    requests: int,
    expected: int,
    ledger_records: int | None,
    trend: Mapping[str, Any],
    max_rss_growth_kib_per_min: float | None,
) -> list[str]:
    """Why the soak failed; [] when it passed."""
    failures = []
    if errors:
        failures.append(f"{errors} of {requests} requests failed")
    if requests != expected:
        failures.append(f"{requests} requests completed, {expected} were scheduled")
    if ledger_records is not None and ledger_records != requests:
        failures.append(f"the ledger holds {ledger_records} records for {requests} requests")
    slope = trend.get("slope_kib_per_min")
    limit = max_rss_growth_kib_per_min
    if limit is not None and slope is not None and slope > limit:
        failures.append(f"RSS grew {slope:g} KiB/min after the warm-up (limit {limit:g} KiB/min)")
    return failures


# --------------------------------------------------------------------------- the document


def document(
    *,
    machine: Mapping[str, Any],
    options: Mapping[str, Any],
    summary: Mapping[str, Any],
    window_ms: int,
    rss: Sequence[tuple[float, int]],
    fds: Mapping[str, Any],
    cpu: Mapping[str, Any],
    ledger_records: int | None,
    proxy_stats: Mapping[str, Any] | None,
    max_rss_growth_kib_per_min: float | None,
    expected: int,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    target = target_of(summary)
    window_s = window_ms / 1000
    trend = rss_trend(rss, float(options.get("warmup_s", 0.0)), window_s)
    requests = int(target["completed"])
    errors = int(target["errors"])
    failures = verdict(
        errors, requests, expected, ledger_records, trend, max_rss_growth_kib_per_min
    )
    return {
        "schema": SCHEMA_VERSION,
        "machine": dict(machine),
        "options": dict(options),
        "requests": {
            "scheduled": expected,
            "completed": requests,
            "ok": int(target["ok"]),
            "errors": errors,
            "error_kinds": dict(target.get("error_kinds") or {}),
            "cache_hits": int(target.get("cache_hits", 0)),
            "achieved_rps": target.get("achieved_rps"),
            "wall_s": summary.get("wall_s"),
        },
        "latency_us": dict(target["latency_us"]),
        "send_lag_us": dict(target.get("send_lag_us") or {}),
        "kinds": dict(target.get("kinds") or {}),
        "mix": dict(summary.get("mix") or {}),
        "windows": window_rows(timeline(target, window_ms), window_s),
        "seconds": window_rows(timeline(target, 1000), 1.0),
        "rss": {
            "interval_samples": [[round(t, 3), value] for t, value in rss],
            "trend": trend,
            "threshold_kib_per_min": max_rss_growth_kib_per_min,
        },
        "fds": dict(fds),
        "cpu": dict(cpu),
        "ledger_records": ledger_records,
        "proxy_stats": dict(proxy_stats) if proxy_stats else None,
        "failures": failures,
        "passed": not failures,
        "notes": list(notes),
    }


# --------------------------------------------------------------------------- Markdown


def ms(us: float | None) -> str:
    if us is None:
        return "-"
    value = us / 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def signed(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:+,.0f} {unit}"


def _loadavg(values: Sequence[float] | None) -> str:
    return "-" if not values else " / ".join(f"{value:.2f}" for value in values)


def markdown(result: Mapping[str, Any]) -> str:
    options, requests = result["options"], result["requests"]
    trend, fds, cpu = result["rss"]["trend"], result["fds"], result["cpu"]
    machine = result["machine"]
    lines = [
        "## Soak",
        "",
        f"switchyard (release build) at **{options['rate']:g} req/s for "
        f"{options['duration_s']:g} s**, open loop, against `{options['upstream']}`; mix "
        + ", ".join(f"{kind} {weight}" for kind, weight in result["mix"].items())
        + f" (repeats drawn from {options['repeat_pool']} texts).",
        "",
        f"- Requests: **{requests['completed']:,}** of {requests['scheduled']:,} scheduled, "
        f"**{requests['errors']} errors**"
        + (f" ({requests['error_kinds']})" if requests["error_kinds"] else "")
        + f", {requests['cache_hits']:,} cache hits, achieved {requests['achieved_rps']} req/s.",
        f"- Ledger: {_count(result['ledger_records'])} records for this run's tenant.",
        f"- Verdict: **{'PASS' if result['passed'] else 'FAIL'}**"
        + ("" if result["passed"] else ": " + "; ".join(result["failures"])),
        "",
        "Latency (ms, from the scheduled send time: no coordinated omission):",
        "",
    ]
    overall = result["latency_us"]
    rows = [["all", f"{overall.get('count', 0):,}", *(ms(overall.get(k)) for k in PERCENTILES)]]
    for kind, figures in result["kinds"].items():
        latency = figures["latency_us"]
        rows.append([kind, f"{latency['count']:,}", *(ms(latency.get(k)) for k in PERCENTILES)])
    lines += table(["requests", "count", "p50", "p90", "p99", "max"], rows)
    lines += [
        "",
        f"Over time ({options['window_s']:g} s windows; p50 / p99 / max in ms):",
        "",
    ]
    lines += table(
        ["from s", "requests", "req/s", "errors", "all", "non-streaming", "streaming"],
        (
            [
                f"{row['start_s']:g}",
                f"{row['requests']:,}",
                f"{row['rps']:g}",
                str(row["errors"]),
                _trio(row),
                _trio(row.get("non_streaming")),
                _trio(row.get("streaming")),
            ]
            for row in result["windows"]
        ),
    )
    threshold = result["rss"]["threshold_kib_per_min"]
    lines += [
        "",
        "Memory and descriptors of the proxy:",
        "",
        f"- RSS: {mib(trend['start_bytes'])} MiB at the start, {mib(trend['end_bytes'])} MiB "
        f"at the end, {mib(trend['max_bytes'])} MiB at most ({trend['samples']} samples).",
        f"- After the {trend['warmup_s']:g} s warm-up: least-squares slope "
        f"**{signed(trend['slope_kib_per_min'], 'KiB/min')}**; median of the first "
        f"{trend['window_s']:g} s {mib(trend['first_window_median_bytes'])} MiB, of the last "
        f"{mib(trend['last_window_median_bytes'])} MiB "
        f"({signed(trend['first_to_last_kib'], 'KiB')}).",
        "- RSS growth threshold: "
        + (
            f"enforced, {threshold:g} KiB/min (`--max-rss-growth`)."
            if threshold is not None
            else "not enforced (report only; `--max-rss-growth KIB_PER_MIN` enforces one)."
        ),
        f"- Open file descriptors: {fds.get('before')} before, {fds.get('after')} after "
        f"(at most {fds.get('max')} during the load); connections to the upstream "
        f"{fds.get('upstream_connections_before', '-')} before, "
        f"{fds.get('upstream_connections_after', '-')} after (the proxy's idle keep-alive "
        "pool), from clients "
        f"{fds.get('client_connections_after', '-')} after.",
        "",
        f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model')}); load average "
        f"{_loadavg(machine.get('loadavg_before'))} before, "
        f"{_loadavg(machine.get('loadavg_after'))} after. CPU during the load: proxy "
        f"{_pct(cpu.get('proxy_cores'))}, upstream {_pct(cpu.get('upstream_cores'))}, load "
        f"generator and harness {_pct(cpu.get('harness_cores'))}, everything else on the "
        f"machine {_pct(cpu.get('other_cores'))} (of a core).",
    ]
    if result.get("notes"):
        lines += ["", *(f"- {note}" for note in result["notes"])]
    return "\n".join(lines) + "\n"


def _trio(figures: Mapping[str, Any] | None) -> str:
    if not figures:
        return "-"
    return " / ".join(ms(figures[key]) for key in ("p50", "p99", "max"))


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _pct(cores: float | None) -> str:
    return "-" if cores is None else f"{cores * 100:.0f}%"


# --------------------------------------------------------------------------- the plot


def plot(result: Mapping[str, Any], path: Path) -> bool:
    """RSS over time (with the post-warm-up trend line) above latency percentiles per second,
    as a PNG. False when matplotlib is not installed (the `bench` dependency group)."""
    plt = pyplot()
    if plt is None:
        return False
    figure, (memory, latency) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    samples = result["rss"]["interval_samples"]
    trend = result["rss"]["trend"]
    memory.plot([t for t, _ in samples], [v / MIB for _, v in samples], label="RSS")
    after = [(t, v) for t, v in samples if t >= trend["warmup_s"]]
    if trend["slope_kib_per_min"] is not None and after:
        mean_t = math.fsum(t for t, _ in after) / len(after)
        mean_v = math.fsum(v for _, v in after) / len(after) / MIB
        per_s = trend["slope_kib_per_min"] / 60 / 1024
        ends = [after[0][0], after[-1][0]]
        memory.plot(
            ends,
            [mean_v + per_s * (t - mean_t) for t in ends],
            "--",
            label=f"trend {trend['slope_kib_per_min']:+g} KiB/min",
        )
    memory.axvline(trend["warmup_s"], color="grey", alpha=0.4, label="end of warm-up")
    memory.set_ylabel("proxy RSS (MiB)")
    memory.grid(True, alpha=0.3)
    memory.legend(loc="lower right")
    seconds = result["seconds"]
    styles = {"non_streaming": "-", "streaming": "--"}
    split = any(row.get("non_streaming") or row.get("streaming") for row in seconds)
    for name in CLASSES if split else ():
        for key in ("p50", "p99", "max"):
            points = [(row["start_s"], row[name][key]) for row in seconds if row.get(name)]
            latency.plot(
                [t for t, _ in points],
                [value / 1000 for _, value in points],
                styles[name],
                label=f"{name.replace('_', '-')} {key}",
            )
    for key in () if split else ("p50", "p99", "max"):
        latency.plot([r["start_s"] for r in seconds], [r[key] / 1000 for r in seconds], label=key)
    latency.set_yscale("log")
    latency.set_ylabel("latency per second (ms)")
    latency.set_xlabel("seconds since the load began")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small", ncol=3, frameon=False
    )
    options = result["options"]
    figure.suptitle(f"Soak: {options['rate']:g} req/s for {options['duration_s']:g} s")
    return save(plt, figure, path)
