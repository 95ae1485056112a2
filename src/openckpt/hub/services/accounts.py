"""Users, organisations, memberships, access tokens (stored hashed) and permission checks."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session, joinedload

from openckpt.errors import BadRequestError, ConflictError, ForbiddenError, UnauthorizedError
from openckpt.hub.db.models import Account, Membership, Repo, Token, WebSession, utcnow
from openckpt.hub.services.names import check_account_name
from openckpt.protocol import TOKEN_PREFIX

if TYPE_CHECKING:
    from openckpt.hub.db.engine import Database

__all__ = [
    "ROLES",
    "Principal",
    "add_member",
    "authenticate",
    "note_token_use",
    "create_account",
    "create_own_token",
    "create_token",
    "find_account",
    "hash_token",
    "list_tokens",
    "revoke_own_token",
    "revoke_token",
    "set_fullname",
]

ROLES = ("read", "write", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an account, the role of the token used, and the organisations it belongs to."""

    account_id: int
    name: str
    fullname: str
    is_admin: bool
    token_role: str
    token_name: str
    orgs: dict[int, str] = field(default_factory=dict)
    """Org account id → role in it."""
    token_id: int | None = None
    """The access token used (or that a web session signed in with): what it mints ends with its revocation."""

    @property
    def can_write(self) -> bool:
        return self.token_role in ("write", "admin")

    def may_read(self, repo: Repo) -> bool:
        return not repo.private or self.may_read_private_of(repo.owner_id)

    def may_read_private_of(self, owner_id: int) -> bool:
        """Whether the caller sees the private repos of the account ``owner_id``."""
        return self.is_admin or owner_id == self.account_id or owner_id in self.orgs

    def may_write(self, repo: Repo) -> bool:
        return self.can_write and self.may_write_to(repo.owner_id)

    def may_write_to(self, owner_id: int) -> bool:
        return self.is_admin or owner_id == self.account_id or self.orgs.get(owner_id) in ("write", "admin")


def may_read(principal: Principal | None, repo: Repo) -> bool:
    return not repo.private or (principal is not None and principal.may_read(repo))


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_account(
    session: Session,
    name: str,
    *,
    kind: str = "user",
    fullname: str = "",
    is_admin: bool = False,
    reserved_ok: bool = False,
) -> Account:
    """A new account; a name reserved for the hub's own paths only with ``reserved_ok`` (the bootstrap ``admin``)."""
    check_account_name(name, reserved_ok=reserved_ok)
    if session.scalar(select(Account).where(Account.name == name)) is not None:
        raise ConflictError(f"account {name!r} already exists")
    account = Account(name=name, kind=kind, fullname=fullname or name, is_admin=is_admin)
    session.add(account)
    session.flush()
    return account


def add_member(session: Session, org: Account, user: Account, role: str) -> None:
    if org.kind != "org" or user.kind != "user":
        raise BadRequestError("members are users added to organisations")
    if role not in ROLES:
        raise BadRequestError(f"role must be one of {', '.join(ROLES)}")
    session.merge(Membership(org_id=org.id, user_id=user.id, role=role))


def create_token(session: Session, account: Account, *, name: str, role: str = "write") -> tuple[Token, str]:
    """A new token; the secret is returned once and only its sha256 is stored."""
    if role not in ("read", "write"):
        raise BadRequestError("token role must be 'read' or 'write'")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = Token(account_id=account.id, name=name, role=role, digest=hash_token(secret), hint=secret[-4:])
    session.add(token)
    session.flush()
    return token, secret


def revoke_token(session: Session, account: Account, token_id: int) -> None:
    """Revoke the token, and with it the web sessions it signed in (Xet tokens it got are refused from now on)."""
    token = session.get(Token, token_id)
    if token is None or token.account_id != account.id or token.revoked_at is not None:
        raise ForbiddenError("no such active token")
    token.revoked_at = utcnow()
    session.execute(delete(WebSession).where(WebSession.token_id == token_id))


def create_own_token(db: Database, principal: Principal, *, name: str, role: str) -> str:
    """A new token of the caller's account (a write token only from a caller signed in with one); its secret."""
    if role == "write" and not principal.can_write:
        raise ForbiddenError("this session uses a read token: it can create read tokens only")
    with db.write() as session:
        account = session.get(Account, principal.account_id)
        assert account is not None
        return create_token(session, account, name=name, role=role)[1]


def revoke_own_token(db: Database, principal: Principal, *, token_id: int) -> None:
    """Revoke a token of the caller's account (a write token's caller only), and the web sessions it signed in."""
    if not principal.can_write:
        raise ForbiddenError("this session uses a read token: sign in with a write token to revoke tokens")
    with db.write() as session:
        account = session.get(Account, principal.account_id)
        assert account is not None
        revoke_token(session, account, token_id)


def set_fullname(db: Database, principal: Principal, *, fullname: str) -> None:
    """Change the caller's full name (a write token's caller only; at most 200 characters, else its name)."""
    if not principal.can_write:
        raise ForbiddenError("this session uses a read token: sign in with a write token to change the profile")
    with db.write() as session:
        account = session.get(Account, principal.account_id)
        assert account is not None
        account.fullname = fullname.strip()[:200] or principal.name


# Local administration (the ``openckpt user|org|token`` commands) --------------------------------------------


def find_account(session: Session, name: str, *, kind: str | None = None) -> Account:
    """The account called ``name`` (a ``"user"`` or ``"org"`` if ``kind`` is given)."""
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None or (kind is not None and account.kind != kind):
        raise BadRequestError(f"no {kind or 'account'} named {name!r}")
    return account


def list_tokens(session: Session, account: Account | None = None, *, revoked: bool = False) -> list[Token]:
    """Tokens of ``account`` (of every account if None), oldest first; revoked ones only if ``revoked``."""
    stmt = select(Token).options(joinedload(Token.account)).order_by(Token.id)
    if account is not None:
        stmt = stmt.where(Token.account_id == account.id)
    if not revoked:
        stmt = stmt.where(Token.revoked_at.is_(None))
    return list(session.scalars(stmt))


_PRINCIPAL_ROWS = (
    select(
        Token.revoked_at,
        Token.role,
        Token.name,
        Account.id,
        Account.name,
        Account.fullname,
        Account.is_admin,
        Token.id,
        Membership.org_id,
        Membership.role,
    )
    .join(Account, Account.id == Token.account_id)
    .outerjoin(Membership, Membership.user_id == Account.id)
    .where(Token.digest == bindparam("digest"))
)
"""The caller behind a token digest, a row per organisation it belongs to. Hot statements are built once: building
one costs more than running it."""


TOKEN_USE_INTERVAL = 60.0
"""Seconds between two writes of a token's ``last_used_at`` by one process: a minute is precise enough to show."""
_token_uses: dict[int, float] = {}
_token_uses_lock = threading.Lock()


def note_token_use(db: Database, token_id: int) -> None:
    """Record that the token was used now, at most once a :data:`TOKEN_USE_INTERVAL` per token and process."""
    moment = time.monotonic()
    with _token_uses_lock:
        last = _token_uses.get(token_id)
        if last is not None and moment - last < TOKEN_USE_INTERVAL:
            return
        _token_uses[token_id] = moment
    with db.write() as session:
        session.execute(update(Token).where(Token.id == token_id).values(last_used_at=utcnow()))


def authenticate(session: Session, secret: str) -> Principal:
    """The principal of a bearer token; :class:`UnauthorizedError` if it is unknown or revoked."""
    rows = session.execute(_PRINCIPAL_ROWS, {"digest": hash_token(secret)}).all()
    if not rows or rows[0][0] is not None:
        raise UnauthorizedError("Invalid credentials in Authorization header")
    _, role, token_name, account_id, name, fullname, is_admin, token_id = rows[0][:8]
    orgs = {org_id: org_role for *_, org_id, org_role in rows if org_id is not None}
    return Principal(account_id, name, fullname, is_admin, role, token_name, orgs, token_id)
