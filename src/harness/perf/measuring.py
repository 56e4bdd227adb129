"""What the benchmark (`harness.perf.bench`) and the soak (`harness.perf.soak`) share: the release
binaries they run, their stack's lifetime, the readiness request, the load generator's run and
summary, the machine they ran on, the proxy's /stats, and how a run is reported."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from harness.perf.results import Results
from harness.runtime import paths, toolchain
from harness.runtime.config import ConfigError, ServiceConfig, StackConfig
from harness.runtime.process import HealthCheck, ProcessError, Service, run, signals_as_exceptions
from harness.runtime.stack import Stack

BINARIES = ("switchyard", "fast_upstream", "loadgen")
HTTP_HEALTH = HealthCheck("http", "/health")

Say = Callable[[str], None]


def release_binaries(root: Path) -> dict[str, Path]:
    return {name: root / "proxy" / "target" / "release" / name for name in BINARIES}


def ensure_release_binaries(
    build: bool, say: Say, error: type[ProcessError] = ProcessError
) -> dict[str, Path]:
    """The release builds of the proxy and the two bench tools, built first when `build`."""
    root = paths.root()
    if build:
        toolchain.check_cargo()
        say("building: cargo build --release --workspace (switchyard, fast_upstream, loadgen)")
        # --workspace: the bench tools are a workspace member of their own (proxy/bench/).
        command = ["cargo", "build", "--release", "--manifest-path", "proxy/Cargo.toml"]
        command += ["--workspace"]
        code = run(command, cwd=root)
        if code != 0:
            raise error(f"cargo build failed (exit code {code})")
    bins = release_binaries(root)
    missing = [str(path) for path in bins.values() if not path.exists()]
    if missing:
        raise error(f"missing {', '.join(missing)}: build them (`invoke build`)")
    return bins


def upstream_service(
    name: str, bins: Mapping[str, Path], chunk_interval_us: int, workers: int
) -> ServiceConfig:
    """The fast fixed-response upstream, pausing `chunk_interval_us` between streamed events."""
    command = [str(bins["fast_upstream"]), "--port", "0", "--port-file", "${port_file}"]
    command += ["--chunk-interval-us", str(chunk_interval_us), "--workers", str(workers)]
    return ServiceConfig(name=name, command=command, health=HTTP_HEALTH)


def proxy_service(name: str, bins: Mapping[str, Path], log_level: str) -> ServiceConfig:
    """The release switchyard, on the config the stack renders for it."""
    command = [str(bins["switchyard"]), "--config", "${config}", "--port", "0"]
    command += ["--port-file", "${port_file}"]
    env = {"SWITCHYARD_LOG": log_level}
    return ServiceConfig(name=name, command=command, health=HTTP_HEALTH, env=env, stop_grace=5.0)


def own_stack(what: str, services: dict[str, ServiceConfig], proxy: str, stack_id: str) -> Stack:
    """A stack of these services only, owned by this process."""
    config = StackConfig(
        path=Path(f"<{what} stack>"), root=paths.root(), services=services, proxy=proxy, mock=None
    )
    return Stack(config, stack_id, owner_pid=os.getpid())


def busy_note(machine: Mapping[str, Any]) -> list[str]:
    """A note when the machine was not idle when the measurement began."""
    before = machine.get("loadavg_before") or [0.0]
    if before[0] <= 0.5:
        return []
    return [
        f"The machine was not idle at the start (load average {before[0]:.2f}): other "
        "work shared its CPUs, and the tails (p99, max) are noisier for it."
    ]


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown CPU",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_before": [round(value, 2) for value in os.getloadavg()],
    }


def proxy_stats(url: str) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url}/stats", timeout=5)
        return dict(response.json()) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


class LoadgenOutputError(ValueError):
    """The load generator's output holds no usable JSON summary."""


def parse_loadgen(lines: Sequence[str]) -> dict[str, Any]:
    """The last JSON object line of the load generator's output, which has targets."""
    for line in reversed(lines):
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            summary = json.loads(text)
        except ValueError as exc:
            raise LoadgenOutputError(f"the load generator printed broken JSON: {exc}") from None
        if not isinstance(summary, dict) or not summary.get("targets"):
            raise LoadgenOutputError("the load generator's JSON has no targets")
        return summary
    tail = "\n".join(lines[-20:])
    raise LoadgenOutputError(f"the load generator printed no JSON summary:\n{tail}")


def run_loadgen(command: Sequence[str], error: type[ProcessError]) -> dict[str, Any]:
    """Run the load generator in the foreground; its JSON summary, or `error` saying why not
    (with the tail of its output)."""
    lines: list[str] = []
    code = run(list(command), on_output=lines.append)
    if code != 0:
        tail = "\n".join(lines[-20:])
        raise error(f"the load generator failed (exit code {code}):\n{tail}")
    try:
        return parse_loadgen(lines)
    except LoadgenOutputError as exc:
        raise error(str(exc)) from None


def check_ready(
    url: str,
    who: str,
    body: Mapping[str, Any],
    error: type[ProcessError],
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One chat completion before any load; `error` naming `who` unless it is a 200."""
    try:
        response = httpx.post(
            f"{url}/v1/chat/completions", json=dict(body), headers=dict(headers or {}), timeout=10
        )
    except httpx.HTTPError as exc:
        raise error(f"{who}: {exc.__class__.__name__}: {exc}") from None
    if response.status_code != 200:
        raise error(f"{who}: HTTP {response.status_code}: {response.text[:300]}")
    return response


@contextmanager
def stack_running(the_stack: Stack, say: Say) -> Iterator[dict[str, Service]]:
    """The measurement's own stack, up; stopped at the end, on Ctrl-C and SIGTERM too."""
    with signals_as_exceptions():
        try:
            say(f"starting the stack {the_stack.id}: {', '.join(the_stack.config.services)}")
            yield the_stack.up()
        finally:
            say(f"stopping the stack {the_stack.id}")
            the_stack.down()


def main(
    name: str,
    no_color: bool,
    measure: Callable[[Say], dict[str, Any]],
    results: Results,
    directory: Path,
    plot: bool,
) -> int:
    """A measuring command from start to end: measure, publish the result (stdout and
    `directory`), and the exit code: 0, or 1 when the result has failures (see `Reporter.run`
    for the others)."""
    reporter = Reporter(name, no_color)
    result = reporter.run(measure)
    if isinstance(result, int):
        return result
    reporter.publish(result, results, directory, plot=plot)
    if result.get("failures"):
        reporter.failed("; ".join(result["failures"]))
        return 1
    return 0


class Reporter:
    """The terminal side of a measuring command: progress on stderr (rich), the Markdown
    result on stdout, and one line saying how it failed or was interrupted."""

    def __init__(self, name: str, no_color: bool) -> None:
        self.name = name
        self.console = Console(stderr=True, no_color=no_color, highlight=False)

    def say(self, message: str) -> None:
        self.console.print(f"[cyan]{self.name}[/] {escape(message)}", soft_wrap=True)

    def failed(self, why: str) -> None:
        self.console.print(f"[bold red]{self.name} failed[/] {escape(why)}", soft_wrap=True)

    def run(self, measure: Callable[[Say], dict[str, Any]]) -> dict[str, Any] | int:
        """The result of `measure(say)`, or the exit code when it could not finish: 1 when
        something would not run, 130 after Ctrl-C or SIGTERM (everything is stopped by then)."""
        try:
            return measure(self.say)
        except (ProcessError, ConfigError) as exc:
            self.failed(str(exc))
            return 1
        except KeyboardInterrupt as exc:
            why = str(exc) or "Ctrl-C"
            self.console.print(
                f"[yellow]{self.name} interrupted[/] ({escape(why)}); everything was stopped"
            )
            return 130

    def publish(
        self, result: dict[str, Any], results: Results, directory: Path, plot: bool
    ) -> None:
        """The result's files, then its Markdown on stdout and what was written."""
        written = results.write(result, directory, plot=plot)
        plotted = any(path.suffix == ".png" for path in written)
        if plot and results.expects_plot(result) and not plotted:
            self.say(f"no {results.png_name}: matplotlib is missing (the `bench` dependency group)")
        sys.stdout.write(results.markdown(result))
        sys.stdout.flush()
        self.say("wrote " + ", ".join(str(path) for path in written))
