"""What the Invoke tasks do. `tasks.py` only parses options and calls these."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from harness.runtime import console, envfile, paths, stack, toolchain
from harness.runtime.process import run, signals_as_exceptions, tail

INTEGRATION_ENV = "OPENAI_API_KEY"


@dataclass
class TierResult:
    name: str
    exit_code: int
    seconds: float
    skipped_reason: str = ""

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def sweep(quiet: bool = False) -> None:
    """Clean up after earlier runs that were killed: orphaned stacks and stale PID files."""
    for line in stack.sweep_orphans():
        console.warn(f"cleaned up {line}")
    if not quiet:
        console.info("no orphans or stale PID files left")


def setup() -> None:
    console.info(f"python {sys.version.split()[0]} at {sys.executable}")
    uv = shutil.which("uv")
    if uv is None:
        console.warn("uv not found on PATH: the nox sessions need it (`python3 -m pip install uv`)")
    else:
        console.info(f"uv at {uv}")
    console.info(f"cargo at {toolchain.check_cargo()}")
    console.info(f"redis-server at {toolchain.ensure_redis(console.info)}")
    console.success("setup complete")


def build() -> None:
    config = stack.load().config
    toolchain.build_services(config, console.info)
    console.success("build complete")


def up() -> None:
    sweep(quiet=True)
    the_stack = stack.load()
    started = time.monotonic()
    with signals_as_exceptions():
        services = the_stack.up()
    elapsed = time.monotonic() - started
    for name, service in services.items():
        console.info(
            f"{name}: PID {service.record.pid}, {service.url}, log {service.spec.log_file}"
        )
    console.success(f"stack {the_stack.id!r} is up: all healthy in {elapsed:.2f}s")
    console.info(f"proxy: {services[the_stack.config.proxy].url}")


def down() -> None:
    the_stack = stack.load()
    with signals_as_exceptions():
        stopped = the_stack.down()
    sweep(quiet=True)
    if stopped:
        console.success(f"stopped {', '.join(stopped)}")
    else:
        console.info("nothing was running")
    for stack_id in stack.list_stacks():
        console.info(f"still running, owned by another live run: stack {stack_id!r}")


def status() -> bool:
    """Print every stack's services. True when the default stack is up and healthy."""
    sweep(quiet=True)
    stack_ids = stack.list_stacks()
    if not stack_ids:
        console.info("no stack is running (start one with `invoke up`)")
        return False
    healthy_default = False
    for stack_id in stack_ids:
        the_stack = stack.load(stack_id)
        table = Table(title=f"stack {stack_id}", title_justify="left")
        for column in ("service", "PID", "port", "health", "uptime", "log"):
            table.add_column(column)
        rows = the_stack.status()
        for row in rows:
            table.add_row(
                row.name,
                str(row.pid or "-"),
                str(row.port or "-"),
                "[green]healthy[/]" if row.healthy else "[red]down[/]",
                f"{row.uptime:.0f}s" if row.uptime is not None else "-",
                str(row.log),
            )
        console.console().print(table)
        if stack_id == stack.DEFAULT_STACK:
            healthy_default = all(row.healthy for row in rows)
    return healthy_default


def logs(service: str | None, lines: int) -> None:
    stack_ids = stack.list_stacks() or [stack.DEFAULT_STACK]
    the_stack = stack.load(
        stack.DEFAULT_STACK if stack.DEFAULT_STACK in stack_ids else stack_ids[0]
    )
    names = [service] if service else list(the_stack.config.services)
    for name in names:
        console.info(f"--- {name}: {the_stack.log_path(name)}")
        print(tail(the_stack.log_path(name), lines))


def clean() -> None:
    """Stop everything of ours, then remove the state directory, reports and build output."""
    down()
    for path in (paths.state_dir(), paths.reports_dir(), paths.root() / "proxy" / "target"):
        if path.exists():
            shutil.rmtree(path)
            console.info(f"removed {path}")
    console.success("clean")


def pytest(args: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run pytest with this interpreter; the process module stops it if we are interrupted."""
    return run([sys.executable, "-m", "pytest", *args], cwd=paths.root(), env=env)


def test(args: str) -> int:
    return pytest(shlex.split(args))


def setup_and_test(workers: str = "auto") -> bool:
    """The one-shot run: setup, build, stack up, tiers, summary, stack down, whatever happens."""
    overall = time.monotonic()
    results: list[TierResult] = []
    the_stack = stack.load(stack.owned_stack_id("setup-and-test"), owner_pid=os.getpid())
    taken = envfile.load_keys()
    if taken:
        console.info(f"from {envfile.env_file()}: {', '.join(taken)}")
    with signals_as_exceptions():
        try:
            sweep(quiet=True)
            setup()
            build()
            started = time.monotonic()
            the_stack.up()
            console.success(f"stack healthy in {time.monotonic() - started:.2f}s")
            env = {"SWITCHYARD_STACK": the_stack.id}
            for tier in ("unit", "mock"):
                results.append(_run_tier(tier, workers, env))
            if os.environ.get(INTEGRATION_ENV):
                results.append(_run_tier("integration", "1", env))
            else:
                results.append(TierResult("integration", 0, 0.0, f"{INTEGRATION_ENV} is not set"))
        finally:
            stopped = the_stack.down()
            console.info(f"stopped {', '.join(stopped) or 'nothing'}")
    _summary(results, time.monotonic() - overall)
    return all(result.passed for result in results)


def _run_tier(tier: str, workers: str, env: dict[str, str]) -> TierResult:
    console.info(f"running the {tier} tier")
    reports = paths.reports_dir()
    reports.mkdir(exist_ok=True)
    args = [f"tests/{tier}", "-n", workers, f"--junitxml={reports / f'junit-{tier}.xml'}", "-q"]
    started = time.monotonic()
    code = pytest(args, env=env)
    return TierResult(tier, code, time.monotonic() - started)


def _summary(results: list[TierResult], seconds: float) -> None:
    table = Table(title="summary", title_justify="left")
    for column in ("tier", "result", "time"):
        table.add_column(column)
    for result in results:
        if result.skipped_reason:
            verdict = f"[yellow]skipped[/] ({result.skipped_reason})"
        elif result.passed:
            verdict = "[green]passed[/]"
        else:
            verdict = f"[red]failed[/] (pytest exit code {result.exit_code})"
        table.add_row(result.name, verdict, f"{result.seconds:.1f}s")
    console.console().print(table)
    if all(result.passed for result in results):
        console.success(f"all tiers passed in {seconds:.1f}s")
    else:
        failed = ", ".join(r.name for r in results if not r.passed)
        console.error(f"failed: {failed}; server logs: {paths.logs_dir()}")
