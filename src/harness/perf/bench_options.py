"""The benchmark's options: its command line (`scripts/bench.py`, and `invoke bench`, which
takes the same options from `parser`), the presets, and the other proxies to measure."""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.perf import bench_report as report
from harness.runtime import paths
from harness.runtime.process import HealthCheck

UPSTREAM = "upstream"
# A second fast upstream measured as if it were a proxy (`--control`): what it "adds" over
# the first is the noise floor of the overhead figures.
CONTROL = "control"
RESERVED = {UPSTREAM, CONTROL, report.DIRECT, report.SWITCHYARD, report.SWITCHYARD_CACHE}
PHASES = ("open", "closed", "stream", "cache")
NAME_PREFIX = re.compile(r"^([a-z][a-z0-9_-]*)=(.+)$", re.DOTALL)

QUICK: dict[str, Any] = {
    "rates": [100.0, 1000.0],
    "duration": 2.0,
    "slice_ms": 500,
    "warmup_ms": 200,
    "closed_duration": 1.5,
    "stream_duration": 1.5,
    "cache_duration": 1.5,
}
FULL: dict[str, Any] = {
    "rates": [100.0, 500.0, 1000.0, 2000.0],
    "duration": 10.0,
    "slice_ms": 1000,
    "warmup_ms": 500,
    "closed_duration": 5.0,
    "stream_duration": 5.0,
    "cache_duration": 5.0,
}


@dataclass(frozen=True)
class OtherProxy:
    """Another OpenAI-compatible proxy measured side by side: started from `command` (with
    `{port}`, `{upstream_url}`, `{upstream_port}` placeholders) or already running at `url`."""

    name: str
    command: str | None = None
    url: str | None = None
    health: str = "tcp"


@dataclass
class BenchOptions:
    rates: list[float] = field(default_factory=lambda: list(FULL["rates"]))
    duration: float = 10.0
    slice_ms: int = 1000
    warmup_ms: int = 500
    concurrency: int = 32
    closed_duration: float = 5.0
    stream_rate: float = 100.0
    stream_duration: float = 5.0
    cache_rate: float = 1000.0
    cache_duration: float = 5.0
    chunk_interval_us: int = 1000
    model: str = "bench"
    timeout_ms: int = 10_000
    results: Path = field(default_factory=lambda: paths.reports_dir() / "bench")
    others: list[OtherProxy] = field(default_factory=list)
    proxy_log: str = "info"
    upstream_workers: int = 1
    loadgen_threads: int = 1
    control: bool = False
    phases: list[str] = field(default_factory=lambda: list(PHASES))
    build: bool = True
    plot: bool = True
    quick: bool = False
    no_color: bool = False


# --------------------------------------------------------------------------- options


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (scripts/bench.py's, and `invoke bench`'s)."""
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Measure what switchyard adds over calling its upstream directly.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="a fast sanity run: 100 and 1000/s, short phases")
    add("--rates", help="open-loop request rates per second, comma-separated (100,500,1000,2000)")
    add("--duration", type=float, help="measured seconds per rate per target (10; quick: 2)")
    add("--slice-ms", type=int, help="targets take turns in slices this long (1000; quick: 500)")
    add("--warmup-ms", type=int, help="unmeasured load per target before each phase (500)")
    add("--concurrency", type=int, default=32, help="closed-loop concurrent requests (32)")
    add("--closed-duration", type=float, help="closed-loop seconds per target (5)")
    add("--stream-rate", type=float, default=100.0, help="streams per second (100)")
    add("--stream-duration", type=float, help="streaming seconds per target (5)")
    add("--cache-rate", type=float, default=1000.0, help="cache-hit run, requests/s (1000)")
    add("--cache-duration", type=float, help="cache-hit seconds per target (5)")
    add("--chunk-interval-us", type=int, default=1000, help="upstream pause between events")
    add("--model", default="bench", help="the model every request names (bench)")
    add("--timeout-ms", type=int, default=10_000, help="a slower answer is an error (10000)")
    add("--results", type=Path, help="where results go (reports/bench/)")
    add(
        "--proxy-cmd",
        action="append",
        default=[],
        metavar="[NAME=]COMMAND",
        help="another proxy to start and measure; placeholders {port}, {upstream_url} "
        "(the upstream's OpenAI base URL, .../v1) and {upstream_port}; repeatable",
    )
    add(
        "--proxy-url",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="another proxy, already running, to measure (its base URL); repeatable",
    )
    add("--proxy-health", default="tcp", help="health check of --proxy-cmd: tcp or http:/path")
    add("--proxy-log", default="info", help="switchyard's SWITCHYARD_LOG (info, as deployed)")
    add("--upstream-workers", type=int, default=1, help="the fast upstream's threads (1)")
    add(
        "--control",
        action="store_true",
        help="also measure a second fast upstream as if it were a proxy: the noise floor",
    )
    add("--loadgen-threads", type=int, default=1, help="the load generator's threads (1)")
    add("--only", help="some phases only, comma-separated: open, closed, stream, cache")
    add("--no-build", action="store_true", help="do not run cargo build first")
    add("--no-plot", action="store_true", help="skip latency.png")
    add("--no-color", action="store_true", help="plain progress lines (so does NO_COLOR)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> BenchOptions:
    options = parser()
    args = options.parse_args(argv)
    preset = QUICK if args.quick else FULL

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return preset[name] if value is None else value

    try:
        HealthCheck.parse(args.proxy_health)
        rates = parse_rates(args.rates) if args.rates else list(preset["rates"])
        others = other_proxies(args.proxy_cmd, args.proxy_url, args.proxy_health)
        phases = parse_phases(args.only) if args.only else list(PHASES)
    except ValueError as exc:
        options.error(str(exc))
    return BenchOptions(
        rates=rates,
        duration=pick("duration"),
        slice_ms=pick("slice_ms"),
        warmup_ms=pick("warmup_ms"),
        concurrency=args.concurrency,
        closed_duration=pick("closed_duration"),
        stream_rate=args.stream_rate,
        stream_duration=pick("stream_duration"),
        cache_rate=args.cache_rate,
        cache_duration=pick("cache_duration"),
        chunk_interval_us=args.chunk_interval_us,
        model=args.model,
        timeout_ms=args.timeout_ms,
        results=args.results or paths.reports_dir() / "bench",
        others=others,
        proxy_log=args.proxy_log,
        upstream_workers=args.upstream_workers,
        loadgen_threads=args.loadgen_threads,
        control=args.control,
        phases=phases,
        build=not args.no_build,
        plot=not args.no_plot,
        quick=args.quick,
        no_color=args.no_color or "NO_COLOR" in os.environ,
    )


def parse_rates(text: str) -> list[float]:
    rates = []
    for part in text.split(","):
        try:
            rate = float(part)
        except ValueError:
            raise ValueError(f"--rates: {part.strip()!r} is not a number") from None
        if not rate > 0:
            raise ValueError(f"--rates: {part.strip()!r} is not a positive rate")
        rates.append(rate)
    return rates


def parse_phases(text: str) -> list[str]:
    phases = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [phase for phase in phases if phase not in PHASES]
    if unknown or not phases:
        raise ValueError(f"--only {text!r}: choose among {', '.join(PHASES)}")
    return [phase for phase in PHASES if phase in phases]


def split_name(text: str) -> tuple[str | None, str]:
    """`name=value` -> (name, value) when it starts with a lowercase name and `=`; else the
    text is all value (so `OPENAI_API_KEY=x cmd` and URLs are left alone)."""
    match = NAME_PREFIX.match(text.strip())
    if match and "://" not in match.group(1):
        return match.group(1), match.group(2).strip()
    return None, text.strip()


def other_proxies(commands: Sequence[str], urls: Sequence[str], health: str) -> list[OtherProxy]:
    """The other proxies, each with a unique target name."""
    taken = set(RESERVED)
    others = []

    def unique(name: str) -> str:
        candidate, suffix = name, 2
        while candidate in taken:
            candidate, suffix = f"{name}-{suffix}", suffix + 1
        taken.add(candidate)
        return candidate

    for index, text in enumerate(commands, 1):
        name, command = split_name(text)
        words = shlex.split(command)
        if not words:
            raise ValueError(f"--proxy-cmd {text!r}: empty command")
        if "{port}" not in command:
            raise ValueError(f"--proxy-cmd {text!r}: the command must use {{port}}")
        default = re.sub(r"[^a-z0-9_-]", "-", Path(words[0]).name.lower()) or f"proxy-{index}"
        others.append(OtherProxy(unique(name or default), command=command, health=health))
    for index, text in enumerate(urls, 1):
        name, url = split_name(text)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--proxy-url {text!r}: expected an http:// URL")
        if not url.startswith("http://"):
            raise ValueError(f"--proxy-url {text!r}: the load generator speaks plain http only")
        others.append(OtherProxy(unique(name or f"url-{index}"), url=base_url(url)))
    return others


def base_url(url: str) -> str:
    """Scheme, host and port: the load generator appends /v1/chat/completions itself."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def stack_command(command: str) -> list[str]:
    """A `--proxy-cmd` as a stack command: `{port}` and friends become stack placeholders."""
    replacements = {
        "{port}": "${port}",
        "{upstream_url}": "${upstream.url}/v1",
        "{upstream_port}": "${upstream.port}",
    }
    words = []
    for word in shlex.split(command):
        for old, new in replacements.items():
            word = word.replace(old, new)
        words.append(word)
    return words
