"""Command line of the smoke check (`scripts/smoke.py`, `invoke smoke`): options, the stack to
check, and a coloured report (or JSON)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.checks.smoke import RequestResult, SmokeOptions, SmokeReport, run_smoke
from harness.runtime import stack
from harness.runtime.process import signals_as_exceptions


def parser() -> argparse.ArgumentParser:
    """The smoke check's options (scripts/smoke.py's, and `invoke smoke`'s)."""
    parser = argparse.ArgumentParser(
        prog="smoke", description="Check a running switchyard stack end to end."
    )
    parser.add_argument("--host", help="proxy host (default: the stack from `invoke up`)")
    parser.add_argument("--port", type=int, help="proxy port (default: the stack from `invoke up`)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds for health and each request"
    )
    parser.add_argument("--requests", type=int, default=20, help="how many requests to send")
    parser.add_argument("--models", help="comma-separated models (default: all of /v1/models)")
    parser.add_argument("--api-key", default=os.environ.get("SWITCHYARD_SMOKE_KEY", "sk-smoke"))
    parser.add_argument("--admin-key", default=os.environ.get("SWITCHYARD_ADMIN_KEY"))
    parser.add_argument("--start", action="store_true", help="start a stack first, stop it after")
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    parser.add_argument("--no-color", action="store_true", help="plain output (so does NO_COLOR)")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="only the final report")
    verbosity.add_argument("--verbose", action="store_true", help="every check, passed ones too")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(
        no_color=args.no_color or "NO_COLOR" in os.environ,
        stderr=args.json,  # stdout carries only the JSON then
        highlight=False,
    )
    with signals_as_exceptions():
        if args.start:
            started = stack.load(stack.owned_stack_id("smoke"), owner_pid=os.getpid())
            try:
                services = started.up()
                url = services[started.config.proxy].url
                return _run(args, url, console)
            finally:
                started.down()
        return _run(args, _proxy_url(args), console)


def _proxy_url(args: argparse.Namespace) -> str:
    if args.host or args.port:
        return f"http://{args.host or '127.0.0.1'}:{args.port or 8080}"
    default = stack.load()
    if default.is_up():
        return default.url(default.config.proxy)
    return "http://127.0.0.1:8080"


def _run(args: argparse.Namespace, url: str, console: Console) -> int:
    options = SmokeOptions(
        base_url=url,
        requests=args.requests,
        timeout=args.timeout,
        api_key=args.api_key,
        admin_key=args.admin_key,
        models=args.models.split(",") if args.models else None,
    )
    if not args.quiet:
        console.print(f"[cyan]smoke[/] checking {url}")

    def progress(result: RequestResult, total: int) -> None:
        if not args.quiet:
            console.print(request_line(result, total))

    report = run_smoke(options, progress)
    render(report, console, verbose=args.verbose)
    if args.json:
        print(report.to_json())
    return 0 if report.passed else 1


def request_line(result: RequestResult, total: int) -> str:
    """`[ 7/20] STREAM  chat       model-a ... OK (0.031s)`."""
    width = len(str(total))
    mode = "STREAM" if result.stream else "SINGLE"
    verdict = "[green]OK[/]" if result.ok else f"[red]FAIL[/] {escape(result.detail)}"
    return (
        f"[{result.index:>{width}}/{total}] {mode:<7} {result.route:<10} "
        f"{escape(result.model)} ... {verdict} ({result.seconds:.3f}s)"
    )


def render(report: SmokeReport, console: Console, verbose: bool = False) -> None:
    checks = report.checks if verbose else [c for c in report.checks if not c.ok]
    if checks:
        table = Table(title="checks", title_justify="left")
        for column in ("check", "result", "detail"):
            table.add_column(column)
        for check in checks:
            verdict = "[green]pass[/]" if check.ok else "[red]FAIL[/]"
            table.add_row(escape(check.name), verdict, escape(check.detail))
        console.print(table)
    requests_ok = sum(r.ok for r in report.requests)
    checks_ok = sum(c.ok for c in report.checks)
    summary = (
        f"requests {requests_ok}/{len(report.requests)} ok, "
        f"checks {checks_ok}/{len(report.checks)} passed, "
        f"pass rate {report.pass_rate:.0%}, {report.seconds:.2f}s"
    )
    if report.passed:
        console.print(f"[bold green]PASSED[/] {summary}")
    else:
        console.print(f"[bold red]FAILED[/] {summary}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
