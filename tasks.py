"""Invoke tasks: build the proxy, run the stack in the background, run the test tiers.

Each task is a thin wrapper: the work is done in `harness.dev.orchestrate`, and `smoke` and
`bench` take the options of their own command lines (`harness.checks.smoke_cli`,
`harness.perf.bench_options`). Every task takes `--no-color` (so does NO_COLOR).
"""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, Context, Exit, task

from harness.checks import smoke_cli
from harness.dev import orchestrate
from harness.dev import record as recorder
from harness.dev.invoke_support import ParserTask, exit_with, guarded
from harness.perf import bench as benchmark
from harness.perf import bench_options


@task
def setup(c: Context, no_color: bool = False) -> None:
    """Check for uv and cargo, and install redis-server when it is missing (needs root)."""
    guarded(no_color, orchestrate.setup)


@task
def build(c: Context, no_color: bool = False) -> None:
    """Build the proxy with `cargo build --release` (incremental)."""
    guarded(no_color, orchestrate.build)


@task
def up(c: Context, no_color: bool = False) -> None:
    """Start the stack (Redis, mock upstream, proxy) in the background and wait until healthy."""
    guarded(no_color, orchestrate.up)


@task
def down(c: Context, no_color: bool = False) -> None:
    """Stop the stack started by `up`, and any stack whose owner died; remove their PID files."""
    guarded(no_color, orchestrate.down)


@task
def status(c: Context, no_color: bool = False) -> None:
    """Show each service's PID, port, health and uptime; clean orphans and stale PID files."""
    guarded(no_color, orchestrate.status)


@task(help={"service": "only this service (redis, mock, proxy)", "lines": "how many lines"})
def logs(c: Context, service: str = "", lines: int = 40, no_color: bool = False) -> None:
    """Print the last lines of the stack's server logs."""
    guarded(no_color, lambda: orchestrate.logs(service or None, lines))


@task(help={"args": 'arguments for pytest, e.g. --args "tests/mock -k stream -x"'})
def test(c: Context, args: str = "tests/unit tests/mock -n auto", no_color: bool = False) -> None:
    """Run pytest in this environment; reuses a stack started by `up`."""
    exit_with(no_color, lambda: orchestrate.test(args))


@task(name="setup-and-test", help={"workers": "pytest-xdist workers (-n)"})
def setup_and_test(c: Context, workers: str = "auto", no_color: bool = False) -> None:
    """One shot: setup, build, stack up, unit and mock tiers (integration too when
    OPENAI_API_KEY is set), a summary, and everything stopped whatever happens."""
    if not guarded(no_color, lambda: orchestrate.setup_and_test(workers)):
        raise Exit(code=1)


@task(klass=ParserTask, parser=smoke_cli.parser())
def smoke(c: Context, argv: list[str]) -> None:
    """Smoke-check a running stack: health, a mixed load, and consistent /status, /stats,
    /metrics and /v1/usage. Exits non-zero if anything failed."""
    exit_with("--no-color" in argv, lambda: smoke_cli.main(argv))


@task(klass=ParserTask, parser=bench_options.parser())
def bench(c: Context, argv: list[str]) -> None:
    """Benchmark what switchyard adds over calling its upstream directly (open-loop latency by
    rate, closed-loop throughput, streaming, cache hits, memory). Markdown on stdout; results
    under reports/bench/. The plot needs matplotlib: `uv run --group bench invoke bench`."""
    exit_with("--no-color" in argv, lambda: benchmark.main(argv))


@task(
    help={
        "upstream": "real (OPENAI_API_KEY, OPENAI_BASE_URL; .env too) or mock (a mock of its own)",
        "out": "the folder for the cassettes (default reports/cassettes/)",
        "model": "the model to ask (default SWITCHYARD_INTEGRATION_MODEL, else gpt-4o-mini)",
    }
)
def record(
    c: Context, upstream: str = "real", out: str = "", model: str = "", no_color: bool = False
) -> None:
    """Record cassettes: a scripted set of calls (chat and responses, whole and streamed, a tool
    call) through a recorder in front of the upstream; keys are scrubbed from every file."""
    exit_with(
        no_color, lambda: recorder.record(upstream, Path(out) if out else None, model or None)
    )


@task
def clean(c: Context, no_color: bool = False) -> None:
    """Stop everything, then remove .switchyard/, reports/ and proxy/target/."""
    guarded(no_color, orchestrate.clean)


ns = Collection(
    setup, build, up, down, status, logs, test, setup_and_test, smoke, bench, record, clean
)
ns.configure({"run": {"echo": True}})
