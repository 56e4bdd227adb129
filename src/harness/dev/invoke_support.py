"""Helpers for tasks.py: the harness's errors as clear messages and exit codes, and tasks whose
options are a command's own argparse parser (so `invoke bench --quick` is `scripts/bench.py
--quick`, with one description of each option)."""

from __future__ import annotations

import argparse
import inspect
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from invoke import Context, Exit, Task

from harness.runtime import console
from harness.runtime.config import ConfigError
from harness.runtime.process import ProcessError

# The extra option of a parser's task: more arguments, as on the command's own command line.
EXTRA = "args"


def guarded(no_color: bool, action: Callable[[], object]) -> object:
    """Run an action; turn the harness's own errors into a clear message and exit code 1, and
    Ctrl-C (or SIGTERM) into exit code 130."""
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


def exit_with(no_color: bool, action: Callable[[], object]) -> None:
    """`guarded`, then exit with the action's result when it is a non-zero exit code."""
    code = guarded(no_color, action)
    if code:
        raise Exit(code=int(code))  # type: ignore[call-overload]


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's options, --help aside."""
    return [
        action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]


def _takes_no_value(action: argparse.Action) -> bool:
    """A flag such as --quick (store_true): given or not."""
    return action.nargs == 0


def _repeats(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def _task_default(action: argparse.Action) -> bool | None:
    """False for a flag, else None: an option left unset is left out, so the parser's own
    default (or preset) applies."""
    return False if _takes_no_value(action) else None


def argv(parser: argparse.ArgumentParser, values: Mapping[str, Any]) -> list[str]:
    """The command line that gives the parser these task option values (unset ones left out)."""
    words: list[str] = []
    for action in options(parser):
        value, flag = values.get(action.dest), action.option_strings[-1]
        if _takes_no_value(action):
            words += [flag] if value else []
        elif _repeats(action):
            for item in value or []:
                words += [flag, str(item)]
        elif value is not None:
            words += [flag, str(value)]
    return words + shlex.split(values.get(EXTRA) or "")


class ParserTask(Task):  # type: ignore[misc]
    """An Invoke task with the options of an argparse parser (and `--args` for more words).

    Invoke reads a task's options from its body's signature; this one reads them from the
    parser, with the parser's help. The body is called with the command line they make."""

    def __init__(self, body: Callable[..., Any], *, parser: argparse.ArgumentParser, **kw: Any):
        self.parser = parser
        actions = options(parser)
        help = {action.dest: action.help or "" for action in actions}
        help[EXTRA] = f'more options of {parser.prog}, as on its command line, e.g. --args "..."'
        kw.setdefault("help", help)
        kw.setdefault("iterable", [action.dest for action in actions if _repeats(action)])
        kw.setdefault("auto_shortflags", False)
        super().__init__(body, **kw)

    def argspec(self, body: Callable[..., Any]) -> inspect.Signature:
        keyword = inspect.Parameter.KEYWORD_ONLY
        parameters = [
            inspect.Parameter(action.dest, keyword, default=_task_default(action))
            for action in options(self.parser)
        ]
        parameters.append(inspect.Parameter(EXTRA, keyword, default=""))
        return inspect.Signature(parameters)

    def __call__(self, context: Context, **values: Any) -> Any:
        return super().__call__(context, argv(self.parser, values))
