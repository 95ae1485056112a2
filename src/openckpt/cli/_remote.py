"""Options shared by the commands that talk to a hub over HTTP (through :mod:`openckpt.client`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.markup import escape

from openckpt.cli._output import EXIT_ERROR, err

if TYPE_CHECKING:
    from openckpt.client.repos import RepoType

__all__ = ["Endpoint", "RepoKind", "RepoTypeOption", "Token", "remote"]

P = ParamSpec("P")
R = TypeVar("R")

Endpoint = Annotated[
    str | None,
    typer.Option(
        help="Hub URL. Default: $HF_ENDPOINT, else the hub of the last `openckpt login`, else http://127.0.0.1:8000.",
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        help="Access token. Default: $HF_TOKEN, else the token saved by `openckpt login`.", show_default=False
    ),
]


class RepoKind(StrEnum):
    model = "model"
    dataset = "dataset"
    space = "space"

    @property
    def kind(self) -> RepoType:
        return self.value


RepoTypeOption = Annotated[RepoKind, typer.Option("--type", help="Kind of repo.")]


def remote(command: Callable[P, R]) -> Callable[P, R]:
    """Turn "the hub did not answer" into one red line and exit code 2 (HTTP errors are left to ``guard``)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except Exception as e:
            from openckpt.client.api import unreachable

            message = unreachable(e)
            if message is None:
                raise
            err().print(f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None

    return run
