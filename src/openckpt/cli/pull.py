"""``openckpt pull REPO[@REV] [DIR]``: download a revision and verify every file against the hub and the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._gate import refuse_unclean
from openckpt.cli._output import EXIT_FINDINGS, byte_progress, err, fail, guard, human_bytes, out, print_json
from openckpt.cli._remote import Endpoint, RepoKind, RepoTypeOption, Revision, Token

__all__ = ["pull_command"]


@guard
def pull_command(
    spec: Annotated[str, typer.Argument(metavar="REPO[@REV]", help="owner/name, optionally @branch, tag or commit.")],
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="[DIR]", help="Where to put the files. Default: huggingface_hub's cache.", show_default=False
        ),
    ] = None,
    revision: Revision = None,
    repo_type: RepoTypeOption = RepoKind.model,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Download a repo revision, verify and scan every file; exit 1 naming each file that differs or is not clean.

    Each file is checked against the hub's tree (sha256 of LFS files, git blob id of the others) and, for files
    listed in openckpt.json, its size, sha256 and blake3. Download progress is huggingface_hub's; verification
    shows its own bar on a terminal.
    """
    from openckpt.client.api import split_revision
    from openckpt.client.pull import pull
    from openckpt.client.verify import verify_snapshot
    from openckpt.errors import IntegrityError

    try:
        repo_id, at = split_revision(spec)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="REPO[@REV]") from None
    if at is not None and revision is not None and at != revision:
        raise typer.BadParameter(f"two revisions: @{at} and --revision {revision}", param_hint="--revision")
    revision = at or revision
    result = pull(
        repo_id, directory, revision=revision, repo_type=repo_type.kind, endpoint=endpoint, token=token, verify=False
    )
    console = err()
    try:
        with byte_progress(console) as bar:
            task = bar.add_task("verifying", total=result.bytes)
            verify_snapshot(result.directory, result.files, progress=lambda name, n: bar.advance(task, n))
    except IntegrityError as e:
        fail(str(e), EXIT_FINDINGS)
    refuse_unclean({f.path: result.directory / f.path for f in result.files}, what=f"pull {spec}")
    if as_json:
        print_json(
            {
                "repo_id": result.repo_id,
                "revision": result.revision,
                "commit": result.commit,
                "directory": str(result.directory),
                "files": [f.path for f in result.files],
                "bytes": result.bytes,
            }
        )
        return
    where = f"{result.repo_id}@{result.revision}"
    summary = f"{len(result.files)} files, {human_bytes(result.bytes)} match the hub and the manifest"
    into = f"(commit {result.commit[:12]}) into {result.directory}"
    out().print(f"[green]pulled[/] {escape(where)} {escape(into)}", soft_wrap=True)
    out().print(f"[green]ok[/]: {summary}")
