"""Invoke tasks: build the proxy, run the stack in the background, run the test tiers.

Each task is a thin wrapper: the work is done in `harness.dev.orchestrate`.
Every task takes `--no-color` (so does the NO_COLOR environment variable).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from invoke import Collection, Context, Exit, task

from harness.checks import smoke_cli
from harness.dev import orchestrate
from harness.perf import bench as benchmark
from harness.runtime import console
from harness.runtime.config import ConfigError
from harness.runtime.process import ProcessError


def _guarded(no_color: bool, action: Callable[[], object]) -> object:
    """Run an action; turn the harness's own errors into a clear message and exit code 1."""
    if no_color:
        console.disable_color()
    try:
        return action()
    except (ProcessError, ConfigError) as exc:
        console.error(str(exc))
        raise Exit(code=1) from None
    except KeyboardInterrupt as exc:
        console.error(f"interrupted ({exc or 'Ctrl-C'}); everything this run started was stopped")
        raise Exit(code=130) from None


@task
def setup(c: Context, no_color: bool = False) -> None:
    """Check for uv and cargo, and install redis-server when it is missing (needs root)."""
    _guarded(no_color, orchestrate.setup)


@task
def build(c: Context, no_color: bool = False) -> None:
    """Build the proxy with `cargo build --release` (incremental)."""
    _guarded(no_color, orchestrate.build)


@task
def up(c: Context, no_color: bool = False) -> None:
    """Start the stack (Redis, mock upstream, proxy) in the background and wait until healthy."""
    _guarded(no_color, orchestrate.up)


@task
def down(c: Context, no_color: bool = False) -> None:
    """Stop the stack started by `up`, and any stack whose owner died; remove their PID files."""
    _guarded(no_color, orchestrate.down)


@task
def status(c: Context, no_color: bool = False) -> None:
    """Show each service's PID, port, health and uptime; clean orphans and stale PID files."""
    _guarded(no_color, orchestrate.status)


@task(help={"service": "only this service (redis, mock, proxy)", "lines": "how many lines"})
def logs(c: Context, service: str = "", lines: int = 40, no_color: bool = False) -> None:
    """Print the last lines of the stack's server logs."""
    _guarded(no_color, lambda: orchestrate.logs(service or None, lines))


@task(help={"args": 'arguments for pytest, e.g. --args "tests/mock -k stream -x"'})
def test(c: Context, args: str = "tests/unit tests/mock -n auto", no_color: bool = False) -> None:
    """Run pytest in this environment; reuses a stack started by `up`."""
    code = _guarded(no_color, lambda: orchestrate.test(args))
    if code:
        raise Exit(code=int(code))  # type: ignore[call-overload]


@task(name="setup-and-test", help={"workers": "pytest-xdist workers (-n)"})
def setup_and_test(c: Context, workers: str = "auto", no_color: bool = False) -> None:
    """One shot: setup, build, stack up, unit and mock tiers (integration too when
    OPENAI_API_KEY is set), a summary, and everything stopped whatever happens."""
    if not _guarded(no_color, lambda: orchestrate.setup_and_test(workers)):
        raise Exit(code=1)


@task(
    help={
        "start": "start a stack first and stop it afterwards",
        "requests": "how many requests to send",
        "json": "print a machine-readable report on stdout",
    }
)
def smoke(
    c: Context, start: bool = False, requests: int = 20, json: bool = False, no_color: bool = False
) -> None:
    """Smoke-check a running stack: health, a mixed load, and consistent /status, /stats,
    /metrics and /v1/usage. Exits non-zero if anything failed."""
    args = ["--requests", str(requests)]
    args += ["--start"] if start else []
    args += ["--json"] if json else []
    args += ["--no-color"] if no_color else []
    code = _guarded(no_color, lambda: smoke_cli.main(args))
    if code:
        raise Exit(code=int(code))  # type: ignore[call-overload]


@task(
    help={
        "quick": "a fast sanity run: 100 and 1000 req/s, short phases",
        "rates": "open-loop request rates per second, comma-separated (100,500,1000,2000)",
        "duration": "measured seconds per rate per target (10; quick: 2)",
        "results": "where bench.json, bench.md and latency.png go (reports/bench/)",
        "proxy_cmd": "another proxy to start and measure: a command with {port} and "
        "{upstream_url}, optionally NAME=COMMAND; repeatable",
        "proxy_url": "another proxy, already running, to measure: [NAME=]URL; repeatable",
        "args": 'more options of scripts/bench.py, e.g. --args "--concurrency 64"',
        "no_build": "do not run cargo build first",
    },
    iterable=["proxy_cmd", "proxy_url"],
    auto_shortflags=False,
)
def bench(
    c: Context,
    quick: bool = False,
    rates: str = "",
    duration: float = 0.0,
    results: str = "",
    proxy_cmd: list[str] | None = None,
    proxy_url: list[str] | None = None,
    args: str = "",
    no_build: bool = False,
    no_color: bool = False,
) -> None:
    """Benchmark what switchyard adds over calling its upstream directly (open-loop latency by
    rate, closed-loop throughput, streaming, cache hits, memory). Markdown on stdout; results
    under reports/bench/. The plot needs matplotlib: `uv run --group bench invoke bench`."""
    argv = ["--quick"] if quick else []
    argv += ["--rates", rates] if rates else []
    argv += ["--duration", str(duration)] if duration else []
    argv += ["--results", results] if results else []
    for command in proxy_cmd or []:
        argv += ["--proxy-cmd", command]
    for url in proxy_url or []:
        argv += ["--proxy-url", url]
    argv += ["--no-build"] if no_build else []
    argv += ["--no-color"] if no_color else []
    argv += shlex.split(args)
    code = _guarded(no_color, lambda: benchmark.main(argv))
    if code:
        raise Exit(code=int(code))  # type: ignore[call-overload]


@task
def clean(c: Context, no_color: bool = False) -> None:
    """Stop everything, then remove .switchyard/, reports/ and proxy/target/."""
    _guarded(no_color, orchestrate.clean)


ns = Collection(setup, build, up, down, status, logs, test, setup_and_test, smoke, bench, clean)
ns.configure({"run": {"echo": True}})
