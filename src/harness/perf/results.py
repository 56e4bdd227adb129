"""The one results writer of the benchmark and the soak: a result as JSON, Markdown and a PNG
plot (matplotlib, the `bench` dependency group, drawn only when it is installed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Result = Mapping[str, Any]


@dataclass(frozen=True)
class Results:
    """How one command's result is written: file names, its Markdown, its plot, and whether a
    result has anything to plot (a missing PNG is then worth a word)."""

    json_name: str
    md_name: str
    png_name: str
    markdown: Callable[[Result], str]
    plot: Callable[[Result, Path], bool]
    expects_plot: Callable[[Result], bool] = lambda result: True

    def write(self, result: Result, directory: Path, *, plot: bool) -> list[Path]:
        """The result as JSON, Markdown and (with `plot`, when it can draw) a PNG."""
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / self.json_name
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        md_path = directory / self.md_name
        md_path.write_text(self.markdown(result))
        written = [json_path, md_path]
        png_path = directory / self.png_name
        if plot and self.plot(result, png_path):
            written.append(png_path)
        return written


def pyplot() -> Any | None:
    """matplotlib's pyplot drawing to files (the Agg backend), or None when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(plt: Any, figure: Any, path: Path) -> bool:
    """Lay out, write as a PNG and close a figure. True: it was written."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
