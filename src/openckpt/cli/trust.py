"""``openckpt key`` and ``openckpt admin``: signing keys, rescans and releases, run locally on a hub's database.

Like ``openckpt token``, they need no running server and no token: run them where the hub's data dir (or
database) is reachable, as the server's operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from openckpt.cli._output import err, guard, out
from openckpt.cli.accounts import DatabaseUrl, DataDir, _session

__all__ = ["admin_app", "key_app"]

key_app = typer.Typer(help="Add and remove users' signing keys (on the hub's database).", no_args_is_help=True)
admin_app = typer.Typer(
    help="Rescan and release files, collect garbage, check storage (on the hub's database).", no_args_is_help=True
)


@key_app.command("add")
@guard
def key_add(
    name: Annotated[str, typer.Argument(help="A name for the key, unique per user.")],
    user: Annotated[str, typer.Option(help="The account whose signed repos this key verifies.")],
    public_key: Annotated[Path, typer.Option(help="PEM file of the EC public key.", exists=True, dir_okay=False)],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a public key that USER's model signatures verify against."""
    from openckpt.hub.services.accounts import find_account
    from openckpt.hub.services.signatures import add_key

    with _session(data_dir, database_url) as session:
        key = add_key(session, find_account(session, user), name, public_key.read_text())
        hint = key.hint
    out().print(f"[green]added[/] key {escape(name)} of {escape(user)} (hint {hint[:16]}…)")


@key_app.command("remove")
@guard
def key_remove(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    user: Annotated[str, typer.Option(help="The account the key belongs to.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove a signing key of USER."""
    from openckpt.hub.services.accounts import find_account
    from openckpt.hub.services.signatures import remove_key

    with _session(data_dir, database_url) as session:
        remove_key(session, find_account(session, user), name)
    out().print(f"[green]removed[/] key {escape(name)} of {escape(user)}")


@admin_app.command("rescan")
@guard
def rescan(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Rescan every stored file whose scan predates the scanner's current rules version, one at a time."""
    from openckpt.cli._output import byte_progress
    from openckpt.hub.db.engine import Database
    from openckpt.hub.services.gate import rescan_stale, rules_version
    from openckpt.hub.settings import Settings
    from openckpt.store.url import open_store

    with _session(data_dir, database_url, write=False):
        pass  # refuses a missing or foreign database, like every local admin command
    settings = Settings.configured(data_dir=data_dir, database_url=database_url)
    db = Database(settings.database())
    try:
        with byte_progress(err()) as bar:
            task = bar.add_task("rescanning", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            store = open_store(settings.storage_url, settings.data_dir.resolve())
            count = rescan_stale(db, store, settings, progress=progress)
    finally:
        db.dispose()
    out().print(f"[green]rescanned[/] {count} file(s) with rules version {escape(rules_version(settings))}")


@admin_app.command("release")
@guard
def release(
    repo_id: Annotated[str, typer.Argument(metavar="OWNER/NAME")],
    path: Annotated[str, typer.Argument(help="The flagged file's path in the repo.")],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit whose file to release.")] = "main",
    repo_type: Annotated[str, typer.Option(help="model, dataset or space.")] = "model",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Let downloads of a flagged file through, as a hub admin would."""
    from openckpt.errors import EntryNotFoundError
    from openckpt.hub.db.models import ScanRelease
    from openckpt.hub.services.commits import resolve_revision
    from openckpt.hub.services.repos import find_repo
    from openckpt.hub.services.trees import file_at

    with _session(data_dir, database_url) as session:
        from openckpt.hub.services.accounts import Principal

        operator = Principal(0, "operator", "", is_admin=True, token_role="write", token_name="local")
        repo = find_repo(session, operator, repo_type=repo_type, repo_id=repo_id)
        entry = file_at(session, resolve_revision(session, repo, rev=revision).tree_id, path=path)
        if entry is None:
            raise EntryNotFoundError(f"{path} does not exist at revision {revision} of {repo_id}")
        if session.get(ScanRelease, (repo.id, path, entry.sha256)) is None:
            session.add(ScanRelease(repo_id=repo.id, path=path, sha256=entry.sha256, released_by="operator"))
    out().print(f"[green]released[/] {escape(repo_id)}: {escape(path)}")
