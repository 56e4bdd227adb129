"""Coloured INFO/SUCCESS/WARN/ERROR lines. Colour is off with NO_COLOR or `--no-color`."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape

_console: Console | None = None

_STYLES = {"INFO": "cyan", "SUCCESS": "bold green", "WARN": "yellow", "ERROR": "bold red"}


def console() -> Console:
    global _console
    if _console is None:
        _console = Console(stderr=False, highlight=False, no_color="NO_COLOR" in os.environ)
    return _console


def disable_color() -> None:
    os.environ["NO_COLOR"] = "1"
    global _console
    _console = None


def _line(level: str, message: str) -> None:
    console().print(f"[{_STYLES[level]}]{level:<7}[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    _line("INFO", message)


def success(message: str) -> None:
    _line("SUCCESS", message)


def warn(message: str) -> None:
    _line("WARN", message)


def error(message: str) -> None:
    _line("ERROR", message)
