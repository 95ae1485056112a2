"""``openckpt push PATH REPO``: export a training checkpoint (or take a model directory) and upload it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard, out
from openckpt.cli._remote import Endpoint, Token, remote

__all__ = ["push_command"]


@guard
@remote
def push_command(
    path: Annotated[Path, typer.Argument(help="openckpt training checkpoint, or a directory to publish as it is.")],
    repo_id: Annotated[str, typer.Argument(metavar="REPO", help="owner/name (created if missing).")],
    revision: Annotated[str | None, typer.Option(help="Branch to commit to (created if missing).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private if it does not exist.")] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Cast exported weights, e.g. bfloat16 (training checkpoints only).")
    ] = None,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Push a checkpoint to the hub in one commit.

    A training checkpoint (optimizer, RNG... besides the model) is exported first: weights only, Hugging Face
    layout, a README.md card whose YAML carries license, base model and datasets from openckpt.json. A directory
    with openckpt.json but no README.md gets a generated card. Upload progress is huggingface_hub's.
    """
    from openckpt.client.push import is_training_checkpoint, push

    if path.is_dir() and is_training_checkpoint(path):
        err().print(f"exporting the model of training checkpoint {escape(str(path))}")
    result = push(
        path, repo_id, revision=revision, private=private, message=message, dtype=dtype, endpoint=endpoint, token=token
    )
    where = f"{result.repo_id}@{result.revision}"
    out().print(f"[green]pushed[/] {len(result.files)} files to {escape(where)}: commit {result.commit[:12]}")
    out().print(escape(result.commit_url), soft_wrap=True)
