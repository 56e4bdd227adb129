"""What the benchmark (`harness.perf.bench`) and the soak (`harness.perf.soak`) share: the release
binaries they run, the machine they ran on, the proxy's /stats, and how a run is reported."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from harness.runtime import paths, toolchain
from harness.runtime.config import ConfigError
from harness.runtime.process import ProcessError, run

BINARIES = ("switchyard", "fast_upstream", "loadgen")

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


def write_results(
    result: dict[str, Any],
    directory: Path,
    names: tuple[str, str, str],
    markdown: Callable[[dict[str, Any]], str],
    plot: Callable[[dict[str, Any], Path], bool] | None,
) -> list[Path]:
    """The result as JSON, Markdown and (with `plot`, when it can draw) a PNG, named `names`."""
    json_name, md_name, png_name = names
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / json_name
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path = directory / md_name
    md_path.write_text(markdown(result))
    written = [json_path, md_path]
    png_path = directory / png_name
    if plot is not None and plot(result, png_path):
        written.append(png_path)
    return written


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

    def publish(self, markdown: str, written: list[Path]) -> None:
        sys.stdout.write(markdown)
        sys.stdout.flush()
        self.say("wrote " + ", ".join(str(path) for path in written))
