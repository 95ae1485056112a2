"""``openckpt push PATH REPO``: export a training checkpoint (or take a model directory) and upload it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard, out, print_json
from openckpt.cli._remote import Endpoint, RepoKind, RepoTypeOption, Token

__all__ = ["push_command"]


@guard
def push_command(
    path: Annotated[
        str,
        typer.Argument(
            metavar="PATH",
            help="A checkpoint, a CheckpointManager run directory (its LATEST), or a folder as it is; or a checkpoint "
            "or run in a bucket, hf://buckets/<owner>/<name>/<path>.",
        ),
    ],
    repo_id: Annotated[str, typer.Argument(metavar="REPO", help="owner/name (created if missing).")],
    revision: Annotated[str | None, typer.Option(help="Branch to commit to (created if missing).")] = None,
    repo_type: RepoTypeOption = RepoKind.model,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private if it does not exist.")] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Cast exported weights, e.g. bfloat16 (training checkpoints only).")
    ] = None,
    replace_card: Annotated[
        bool,
        typer.Option("--replace-card", help="Do not keep the front matter (license, tags...) of the repo's card."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Push a checkpoint to the hub in one commit.

    A run directory of CheckpointManager stands for its LATEST checkpoint. A training checkpoint (optimizer, RNG...
    besides the model) is exported first: weights only, Hugging Face layout, and a README.md card whose YAML carries
    license, base model and datasets from openckpt.json. A directory with openckpt.json but no README.md gets a
    generated card. A generated card keeps the front matter of the card the repo already has (its license, tags...)
    unless --replace-card. Anything else is uploaded as it is, a dataset too with --repo-type dataset.

    A checkpoint in a bucket (hf://buckets/..., where CheckpointManager(mirror=...) put it; a run stands for its
    LATEST) is published by Xet hash: its weights are not sent again, only the card, config and manifest.
    """
    from openckpt.client.push import is_training_checkpoint, push, resolve_run

    if path.startswith("hf://buckets/"):
        if dtype is not None or repo_type is not RepoKind.model:
            raise typer.BadParameter(
                "a bucket's checkpoint goes to a model repo with its weights as they are (no --dtype)"
            )
        _push_from_bucket(path, repo_id, revision, private, message, replace_card, as_json, endpoint, token)
        return
    local = Path(path)
    if local.is_dir():
        source = resolve_run(local)
        if source != local:
            err().print(f"pushing {escape(str(source))}, the LATEST checkpoint of run {escape(path)}")
        if is_training_checkpoint(source):
            err().print(f"exporting the model of training checkpoint {escape(str(source))} (weights only)")
    result = push(
        local,
        repo_id,
        revision=revision,
        repo_type=repo_type.kind,
        private=private,
        message=message,
        dtype=dtype,
        replace_card=replace_card,
        endpoint=endpoint,
        token=token,
    )
    if as_json:
        print_json(
            {
                "repo_id": result.repo_id,
                "revision": result.revision,
                "commit": result.commit,
                "commit_url": result.commit_url,
                "files": result.files,
                "exported": result.exported,
                "source": str(result.source),
                "card_kept": result.card_kept,
            }
        )
        return
    if result.card_kept:
        err().print("kept the front matter of the repo's card (--replace-card to replace it)")
    where = f"{result.repo_id}@{result.revision}"
    out().print(f"[green]pushed[/] {len(result.files)} files to {escape(where)}: commit {result.commit[:12]}")
    out().print(escape(result.commit_url), soft_wrap=True)


def _push_from_bucket(
    url: str,
    repo_id: str,
    revision: str | None,
    private: bool,
    message: str | None,
    replace_card: bool,
    as_json: bool,
    endpoint: str | None,
    token: str | None,
) -> None:
    from openckpt.client.bucket_push import push_from_bucket

    result = push_from_bucket(
        url,
        repo_id,
        revision=revision,
        private=private,
        message=message,
        replace_card=replace_card,
        endpoint=endpoint,
        token=token,
    )
    if as_json:
        print_json(
            {
                "repo_id": result.repo_id,
                "revision": result.revision,
                "commit": result.commit,
                "commit_url": result.commit_url,
                "files": result.files,
                "source": result.source,
                "by_hash": result.by_hash,
            }
        )
        return
    where = f"{result.repo_id}@{result.revision}"
    out().print(
        f"[green]pushed[/] {escape(result.source)} to {escape(where)}: commit {result.commit[:12]}, "
        f"{result.by_hash / 1e6:.1f} MB of weights by Xet hash (not sent again)"
    )
    out().print(escape(result.commit_url), soft_wrap=True)
