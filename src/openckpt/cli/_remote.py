"""Options shared by the commands that talk to a hub over HTTP (through :mod:`openckpt.client`).

Names follow the ``hf`` CLI: ``--repo-type`` (``--type`` too), ``--revision``, ``--token``. Parsing ``--endpoint``
switches huggingface_hub to the fail-fast HTTP session (:mod:`openckpt.client.http`), so a hub that is down is
reported at once instead of after 5 retries.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

if TYPE_CHECKING:
    from openckpt.client.repos import RepoType

__all__ = ["Endpoint", "RepoKind", "RepoTypeOption", "Revision", "Token", "remote"]

P = ParamSpec("P")
R = TypeVar("R")


def _fail_fast(value: str | None) -> str | None:
    from openckpt.client.http import use_fail_fast_session

    use_fail_fast_session()
    return value


Endpoint = Annotated[
    str | None,
    typer.Option(
        help="Hub URL. Default: $HF_ENDPOINT, else the hub of the last `openckpt login`, else http://127.0.0.1:8000.",
        show_default=False,
        callback=_fail_fast,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        help="Access token. Default: $HF_TOKEN, else the token `openckpt login` stored for the hub.",
        show_default=False,
    ),
]
Revision = Annotated[
    str | None,
    typer.Option(help="Git revision: a branch, a tag or a commit id.", show_default=False),
]


class RepoKind(StrEnum):
    model = "model"
    dataset = "dataset"
    space = "space"

    @property
    def kind(self) -> RepoType:
        return self.value


RepoTypeOption = Annotated[RepoKind, typer.Option("--repo-type", "--type", help="Kind of repo.")]


def remote(command: Callable[P, R]) -> Callable[P, R]:
    """Former wrapper for "the hub did not answer": :func:`openckpt.cli._output.guard` now handles every error."""
    return command
