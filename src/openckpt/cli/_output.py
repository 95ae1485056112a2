"""What every command shares: consoles that survive a pipe, exit codes, the error guard, byte sizes, JSON output."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from typer.exceptions import TyperException

from openckpt.cli._errors import EXIT_AUTH, EXIT_FINDINGS, EXIT_NETWORK, EXIT_NOT_FOUND, EXIT_USAGE, describe

__all__ = [
    "EXIT_AUTH",
    "EXIT_ERROR",
    "EXIT_FINDINGS",
    "EXIT_NETWORK",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "byte_progress",
    "err",
    "fail",
    "fmt_float",
    "guard",
    "handle",
    "human_bytes",
    "out",
    "PASS_THROUGH",
    "print_json",
    "set_debug",
]

EXIT_ERROR = EXIT_USAGE
"""Former name of :data:`EXIT_USAGE`."""

PIPE_WIDTH = 4096
"""Console width when the output is not a terminal (and ``COLUMNS`` is unset): lines are never wrapped there."""

_DEBUG = False

PASS_THROUGH = (typer.Exit, typer.Abort, TyperException, KeyboardInterrupt)
"""Exceptions the CLI framework turns into exit codes itself (usage errors are 2)."""

P = ParamSpec("P")
R = TypeVar("R")


def set_debug(on: bool) -> None:
    """``--debug``: let errors through with their traceback instead of one line."""
    global _DEBUG
    _DEBUG = on


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console


def out() -> Console:
    """Console for results (stdout), created per call so redirection and ``COLUMNS`` are honoured; no wrapping
    and no colour when stdout is not a terminal."""
    return _console(stderr=False)


def err() -> Console:
    """Console for errors, warnings and progress (stderr)."""
    return _console(stderr=True)


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr, one line, and exit with ``code``."""
    err().print(f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True)
    raise typer.Exit(code)


def handle(
    error: Exception, *, endpoint: str | None = None, token: str | None = None, repo_id: str | None = None
) -> NoReturn:
    """Exit with the message and code :func:`openckpt.cli._errors.describe` gives ``error``; re-raise it under
    ``--debug``, and unknown errors with a hint to ``--debug``."""
    if _DEBUG:
        raise error
    failure = describe(error, endpoint=endpoint, token=token, repo_id=repo_id)
    if failure is None:
        text = " ".join(str(error).split())
        fail(f"unexpected {type(error).__name__}: {text} (run with --debug for the traceback)", EXIT_USAGE)
    fail(failure.message, failure.code)


def guard(command: Callable[P, R]) -> Callable[P, R]:
    """Turn any error of the command into one red line on stderr and its exit code (see :mod:`._errors`)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PASS_THROUGH:
            raise
        except Exception as e:
            given = {key: value for key, value in kwargs.items() if isinstance(value, str)}
            handle(e, endpoint=given.get("endpoint"), token=given.get("token"), repo_id=given.get("repo_id"))

    return run


def byte_progress(console: Console) -> Progress:
    """A progress bar counting bytes, shown only on a terminal and removed when done."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)


def human_bytes(n: int) -> str:
    """Decimal units as the Hub and the progress bars show them: ``999 B``, ``1.5 kB``, ``201 MB``, ``1.2 GB``."""
    if abs(n) < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if abs(value) < 999.95 or unit == "PB":
            return f"{value:.1f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def fmt_float(x: float | None) -> str:
    """A difference for a table: ``-`` when absent, 4 significant digits otherwise."""
    return "-" if x is None else f"{x:.4g}"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def print_json(obj: Any) -> None:
    """Strict JSON on stdout: non-finite floats become ``null``."""
    typer.echo(json.dumps(_finite(obj), indent=2, ensure_ascii=False))
