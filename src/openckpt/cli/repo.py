"""``openckpt repo create|ls|rm``: manage repos on a hub through huggingface_hub."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import err, guard, out, print_json
from openckpt.cli._remote import Endpoint, RepoKind, RepoTypeOption, Token

__all__ = ["repo_app"]

repo_app = typer.Typer(help="Create, list and delete repos on the hub.", no_args_is_help=True)


@repo_app.command("create")
@guard
def repo_create(
    repo_id: Annotated[str, typer.Argument(metavar="REPO", help="owner/name, or name for your own namespace.")],
    private: Annotated[bool, typer.Option("--private", help="Visible only to the owner (and its members).")] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="Succeed if the repo exists already (as `hf repos create --exist-ok`).")
    ] = False,
    repo_type: RepoTypeOption = RepoKind.model,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Create a repo and print its URL."""
    from openckpt.client.repos import create_repo

    url = create_repo(
        repo_id, repo_type=repo_type.kind, private=private, exist_ok=exist_ok, endpoint=endpoint, token=token
    )
    out().print(escape(url))


@repo_app.command("ls")
@guard
def repo_ls(
    author: Annotated[str | None, typer.Option(help="Only repos of this user or organisation.")] = None,
    search: Annotated[str | None, typer.Option(help="Only repos whose name contains this.")] = None,
    repo_type: RepoTypeOption = RepoKind.model,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """List the repos you can see."""
    from openckpt.client.repos import list_repos

    repos = list_repos(repo_type=repo_type.kind, author=author, search=search, endpoint=endpoint, token=token)
    if as_json:
        print_json([{**asdict(r), "last_modified": r.last_modified and r.last_modified.isoformat()} for r in repos])
        return
    if not repos:
        err().print("no repos")
        return
    table = Table(box=None)
    for column in ("repo", "visibility", "last modified", "downloads"):
        table.add_column(column, justify="right" if column == "downloads" else "left")
    for r in repos:
        modified = r.last_modified.strftime("%Y-%m-%d %H:%M") if r.last_modified else "-"
        table.add_row(escape(r.repo_id), "private" if r.private else "public", modified, f"{r.downloads:,}")
    out().print(table)


@repo_app.command("rm")
@guard
def repo_rm(
    repo_id: Annotated[str, typer.Argument(metavar="REPO", help="owner/name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    repo_type: RepoTypeOption = RepoKind.model,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Delete a repo with all its revisions (asks first unless --yes)."""
    from openckpt.client.repos import delete_repo

    if not yes:
        typer.confirm(f"Delete {repo_type.value} repo {repo_id} and all its revisions?", abort=True)
    delete_repo(repo_id, repo_type=repo_type.kind, endpoint=endpoint, token=token)
    out().print(f"[green]deleted[/] {escape(repo_id)}")
