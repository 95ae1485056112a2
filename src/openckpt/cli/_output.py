"""What every command shares: consoles, exit codes, the error guard, number formatting, JSON output."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

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

from openckpt.errors import OpenckptError

__all__ = [
    "EXIT_ERROR",
    "EXIT_FINDINGS",
    "byte_progress",
    "err",
    "fmt_float",
    "guard",
    "human_bytes",
    "out",
    "print_json",
]

EXIT_FINDINGS = 1
"""verify found a mismatch; diff found differences."""
EXIT_ERROR = 2
"""The command could not do its job: unreadable input, unsafe file, bad arguments."""

P = ParamSpec("P")
R = TypeVar("R")


def out() -> Console:
    """Console for results (stdout), created per call so redirection and ``COLUMNS`` are honoured."""
    return Console(highlight=False)


def err() -> Console:
    """Console for errors, warnings and progress (stderr)."""
    return Console(stderr=True, highlight=False)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def guard(command: Callable[P, R]) -> Callable[P, R]:
    """Turn openckpt and OS errors into one red line on stderr and exit code 2."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except OpenckptError as e:
            message = f"{type(e).__name__}: {_one_line(e)}"
        except OSError as e:
            message = _one_line(e)
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            message = "this command needs torch: pip install 'openckpt[torch]'"
        err().print(f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)

    return run


def byte_progress(console: Console) -> Progress:
    """A progress bar counting bytes, shown only on a terminal and removed when done."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)


def human_bytes(n: int) -> str:
    """``1536`` → ``1.5 KiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
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
