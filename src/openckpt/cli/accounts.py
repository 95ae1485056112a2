"""``openckpt user|org|token``: local administration of a hub, working directly on its database.

Run them where the hub's data dir (or database) is reachable, as the server's operator: they need no running
server and no token. The database must exist (``openckpt serve`` creates it on first start).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import EXIT_NOT_FOUND, err, fail, guard, out, print_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["org_app", "token_app", "user_app"]

token_app = typer.Typer(help="Create, list and revoke access tokens (on the hub's database).", no_args_is_help=True)
user_app = typer.Typer(help="Create users (on the hub's database).", no_args_is_help=True)
org_app = typer.Typer(help="Create organisations and add members (on the hub's database).", no_args_is_help=True)


class TokenRole(StrEnum):
    read = "read"
    write = "write"


class MemberRole(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


DataDir = Annotated[
    Path | None,
    typer.Option(help="The hub's data dir, holding its SQLite database (OPENCKPT_DATA_DIR; default ./data)."),
]
DatabaseUrl = Annotated[
    str | None, typer.Option(help="The hub's database URL instead (OPENCKPT_DATABASE_URL).", show_default=False)
]


@contextmanager
def _session(data_dir: Path | None, database_url: str | None, *, write: bool = True) -> Iterator[Session]:
    """A transaction on an existing hub database (never creates one, nor the data dir)."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from openckpt.errors import OpenckptError
    from openckpt.hub.db.engine import Database
    from openckpt.hub.settings import Settings

    url = make_url(Settings.configured(data_dir=data_dir, database_url=database_url).database())
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        raise FileNotFoundError(f"no hub database at {url.database}: pass --data-dir, or start the hub once there")
    db = Database(url.render_as_string(hide_password=False))
    try:
        if not inspect(db.engine).has_table("accounts"):
            raise OpenckptError(f"{shown} is not a hub database: start the hub on it once (openckpt serve)")
        with db.write() if write else db.read() as session:
            yield session
    finally:
        db.dispose()


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "-"


@token_app.command("create")
@guard
def token_create(
    user: Annotated[str, typer.Option(help="Account the token acts as.")],
    role: Annotated[TokenRole, typer.Option(help="read: download; write: also create repos and push.")] = (
        TokenRole.read
    ),
    name: Annotated[str, typer.Option(help="A label to recognise the token by.")] = "cli",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print its secret (only its sha256 is stored: it cannot be shown again)."""
    from openckpt.hub.services.accounts import create_token, find_account

    with _session(data_dir, database_url) as session:
        token, secret = create_token(session, find_account(session, user, kind="user"), name=name, role=role.value)
        token_id = token.id
    typer.echo(secret)
    note = f"token {token_id} {name!r} ({role.value}) for {user}; the secret above is shown only once"
    err().print(f"[green]created[/] {escape(note)}", soft_wrap=True)


@token_app.command("list")
@guard
def token_list(
    user: Annotated[str | None, typer.Option(help="Only this account's tokens.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List tokens: id, account, name, role, last characters, dates (never the secrets)."""
    from openckpt.hub.services.accounts import find_account, list_tokens

    with _session(data_dir, database_url, write=False) as session:
        account = find_account(session, user) if user else None
        rows = [
            {
                "id": t.id,
                "user": t.account.name,
                "name": t.name,
                "role": t.role,
                "hint": f"…{t.hint}",
                "created": _when(t.created_at),
                "last_used": _when(t.last_used_at),
                "revoked": _when(t.revoked_at),
            }
            for t in list_tokens(session, account, revoked=show_all)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table(box=None)
    for column in ("id", "user", "name", "role", "hint", "created", "last_used", "revoked"):
        table.add_column(column.replace("_", " "), justify="right" if column == "id" else "left")
    for row in rows:
        table.add_row(*(escape(str(value)) for value in row.values()))
    if rows:
        out().print(table)
    else:
        err().print("no tokens")


@token_app.command("revoke")
@guard
def token_revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="The id shown by `openckpt token list`.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a token: the hub answers 401 to it from now on."""
    from openckpt.hub.services.accounts import list_tokens, revoke_token

    with _session(data_dir, database_url) as session:
        token = next((t for t in list_tokens(session) if t.id == token_id), None)
        if token is None:
            fail(f"no active token with id {token_id}: see `openckpt token list`", EXIT_NOT_FOUND)
        revoke_token(session, token.account, token_id)
        owner = token.account.name
    out().print(f"[green]revoked[/] token {token_id} of {escape(owner)}")


@user_app.command("create")
@guard
def user_create(
    name: Annotated[str, typer.Argument(help="Letters, digits, '-', '_', '.'.")],
    admin: Annotated[bool, typer.Option("--admin", help="May read and write every repo.")] = False,
    fullname: Annotated[str, typer.Option(help="Display name.")] = "",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a user (then give it a token: openckpt token create --user NAME)."""
    from openckpt.hub.services.accounts import create_account

    with _session(data_dir, database_url) as session:
        create_account(session, name, fullname=fullname, is_admin=admin)
    out().print(f"[green]created[/] user {escape(name)}{' (admin)' if admin else ''}")


@org_app.command("create")
@guard
def org_create(
    name: Annotated[str, typer.Argument(help="Letters, digits, '-', '_', '.'; shares the users' namespace.")],
    owner: Annotated[str, typer.Option(help="A user who becomes the organisation's admin.")],
    fullname: Annotated[str, typer.Option(help="Display name.")] = "",
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an organisation with OWNER as its admin."""
    from openckpt.hub.services.accounts import add_member, create_account, find_account

    with _session(data_dir, database_url) as session:
        user = find_account(session, owner, kind="user")
        org = create_account(session, name, kind="org", fullname=fullname)
        add_member(session, org, user, MemberRole.admin.value)
    out().print(f"[green]created[/] organisation {escape(name)}, admin {escape(owner)}")


@org_app.command("add-member")
@guard
def org_add_member(
    org: Annotated[str, typer.Argument(help="The organisation.")],
    user: Annotated[str, typer.Argument(help="The user to add (or whose role to change).")],
    role: Annotated[MemberRole, typer.Option(help="read: private repos; write: also push; admin: also manage.")] = (
        MemberRole.read
    ),
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Add USER to ORG with ROLE (or change the role of a member)."""
    from openckpt.hub.services.accounts import add_member, find_account

    with _session(data_dir, database_url) as session:
        add_member(
            session, find_account(session, org, kind="org"), find_account(session, user, kind="user"), role.value
        )
    out().print(f"[green]{escape(user)}[/] is now {role.value} in {escape(org)}")
