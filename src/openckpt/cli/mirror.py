"""``openckpt mirror add|ls|refresh|evict``: the hub's copies of upstream repos (``openckpt serve --upstream``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import guard, out, print_json
from openckpt.cli._remote import Endpoint, RepoKind, RepoTypeOption, Token

__all__ = ["mirror_app"]

mirror_app = typer.Typer(help="The hub's mirror of other hubs (admins): fetch, list, refresh, evict.")
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fetch(spec: str, repo_type: RepoKind, endpoint: str | None, token: str | None, as_json: bool) -> None:
    from openckpt.client.api import split_revision
    from openckpt.client.mirror import mirror_add

    repo_id, revision = split_revision(spec)
    done = mirror_add(repo_id, revision=revision or "main", repo_type=repo_type.kind, endpoint=endpoint, token=token)
    if as_json:
        print_json(done)
        return
    out().print(f"{escape(repo_id)}@{escape(done['revision'])} → {done['commit']} (from {escape(done['upstream'])})")


@mirror_app.command("add")
@guard
def mirror_add_command(
    repo: Annotated[str, typer.Argument(help="Upstream repo to fetch now: OWNER/NAME[@REVISION].")],
    repo_type: RepoTypeOption = RepoKind.model,
    endpoint: Endpoint = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Fetch a revision of an upstream repo into the hub now (scanned and gated as every mirrored read)."""
    _fetch(repo, repo_type, endpoint, token, as_json)


@mirror_app.command("refresh")
@guard
def mirror_refresh_command(
    repo: Annotated[str, typer.Argument(help="Mirrored repo to check again: OWNER/NAME[@REVISION].")],
    repo_type: RepoTypeOption = RepoKind.model,
    endpoint: Endpoint = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Check a mirrored revision against the upstream now, fetching its new commit if it moved."""
    _fetch(repo, repo_type, endpoint, token, as_json)


@mirror_app.command("ls")
@guard
def mirror_ls_command(endpoint: Endpoint = None, token: Token = None, as_json: AsJson = False) -> None:
    """List the mirrored repos, their revisions and the upstream commits they name."""
    from openckpt.client.mirror import mirror_list

    found = mirror_list(endpoint=endpoint, token=token)
    if as_json:
        print_json(found)
        return
    table = Table("repo", "type", "revision", "commit", "upstream", "checked")
    for repo in found:
        for rev in repo["revisions"]:
            checked = datetime.fromtimestamp(rev["checked"]).isoformat(timespec="seconds")
            table.add_row(
                escape(repo["id"]), repo["type"], escape(rev["revision"]), rev["commit"], rev["upstream"], checked
            )
    out().print(table)


@mirror_app.command("evict")
@guard
def mirror_evict_command(
    repo: Annotated[str, typer.Argument(help="Mirrored repo to delete from the hub: OWNER/NAME.")],
    repo_type: RepoTypeOption = RepoKind.model,
    endpoint: Endpoint = None,
    token: Token = None,
) -> None:
    """Delete the hub's copy of a mirrored repo; its next read fetches it again."""
    from openckpt.client.mirror import mirror_evict

    mirror_evict(repo, repo_type=repo_type.kind, endpoint=endpoint, token=token)
    out().print(f"evicted {escape(repo)}")
