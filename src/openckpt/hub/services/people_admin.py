"""Accounts managed from the web: sign-up (open, or by an admin's invite link), an admin's user and organisation
management, and an organisation admin's member management.

An account signs in with an access token (there are no passwords): signing up or being created makes a write token
whose secret is shown once. "Disabling" a user revokes every token (and so every web session) it has; "resetting"
does the same and makes one new token. An invite link names the account it creates and when it expires, signed with
the hub's secret (HMAC-SHA256): it works once, since the name is taken afterwards, and needs no table.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError, ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Membership, Token, WebSession, utcnow
from openckpt.hub.services import accounts, web_sessions
from openckpt.hub.services.names import check_account_name

__all__ = [
    "INVITE_TTL",
    "add_user",
    "check_invite",
    "create_org",
    "create_user",
    "disable_user",
    "make_invite",
    "remove_member",
    "reset_user",
    "set_member",
    "sign_up",
]

INVITE_TTL = 7 * 86400


def _invite_mac(secret: bytes, name: str, expires: int) -> str:
    return hmac.new(secret, f"invite\0{name}\0{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def make_invite(db: Database, name: str, *, secret: bytes, ttl: int = INVITE_TTL) -> str:
    """An invite code for a new user ``name`` (free and valid now), valid for ``ttl`` seconds."""
    check_account_name(name)
    with db.read() as session:
        taken = session.scalar(select(Account.id).where(Account.name == name)) is not None
    if taken:
        raise BadRequestError(f"the name {name!r} is taken")
    expires = int(time.time()) + ttl
    return f"{name}.{expires}.{_invite_mac(secret, name, expires)}"


def check_invite(secret: bytes, code: str) -> str:
    """The account name an invite code was made for; :class:`ForbiddenError` if forged or expired."""
    parts = code.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        raise ForbiddenError("this invite link is not valid: ask an admin of the hub for a new one")
    account, expires, mac = parts
    if not hmac.compare_digest(mac, _invite_mac(secret, account, int(expires))):
        raise ForbiddenError("this invite link is not valid: ask an admin of the hub for a new one")
    if int(expires) < time.time():
        raise ForbiddenError("this invite link has expired: ask an admin of the hub for a new one")
    return account


def create_user(
    session: Session, name: str, *, fullname: str = "", is_admin: bool = False, token_name: str = "web"
) -> tuple[Account, str]:
    """A new user with a write token; returns it and the token's secret (shown once)."""
    account = accounts.create_account(session, name, fullname=fullname.strip()[:200], is_admin=is_admin)
    _, secret = accounts.create_token(session, account, name=token_name, role="write")
    return account, secret


def sign_up(db: Database, name: str, *, fullname: str, lifetime: int) -> tuple[str, str]:
    """A new user ``name`` with a write token and a web session of it (``lifetime`` seconds), in one transaction:
    the token's secret (shown once) and the session's."""
    with db.write() as session:
        _, secret = create_user(session, name, fullname=fullname, token_name="sign-up")
        principal = accounts.authenticate(session, secret)
        return secret, web_sessions.start_session(session, principal, lifetime=lifetime)


def add_user(db: Database, name: str, *, is_admin: bool = False) -> str:
    """A new user (an admin of the hub with ``is_admin``) with a write token; the token's secret (shown once)."""
    with db.write() as session:
        return create_user(session, name, is_admin=is_admin)[1]


def _revoke_all(session: Session, account: Account) -> int:
    tokens = session.scalars(select(Token).where(Token.account_id == account.id, Token.revoked_at.is_(None))).all()
    for token in tokens:
        token.revoked_at = utcnow()
    session.execute(delete(WebSession).where(WebSession.account_id == account.id))
    return len(tokens)


def disable_user(db: Database, name: str) -> int:
    """Revoke every token of user ``name`` and end its web sessions; how many tokens were revoked."""
    with db.write() as session:
        return _revoke_all(session, accounts.find_account(session, name, kind="user"))


def reset_user(db: Database, name: str) -> str:
    """Revoke every token of user ``name`` and make one new write token; its secret."""
    with db.write() as session:
        account = accounts.find_account(session, name, kind="user")
        _revoke_all(session, account)
        return accounts.create_token(session, account, name="reset by an admin", role="write")[1]


def create_org(db: Database, name: str, *, admin: str, fullname: str = "") -> None:
    """A new organisation whose first admin is the user ``admin``."""
    with db.write() as session:
        org = accounts.create_account(session, name, kind="org", fullname=fullname.strip()[:200])
        accounts.add_member(session, org, accounts.find_account(session, admin, kind="user"), "admin")


def _admins(session: Session, org: Account) -> int:
    rows = session.scalars(select(Membership).where(Membership.org_id == org.id, Membership.role == "admin"))
    return len(list(rows))


def set_member(db: Database, org_name: str, *, user: str, role: str) -> None:
    """Add ``user`` to the organisation with ``role``, or change its role; an org keeps at least one admin."""
    with db.write() as session:
        org = accounts.find_account(session, org_name, kind="org")
        account = accounts.find_account(session, user, kind="user")
        current = session.get(Membership, (org.id, account.id))
        if current is not None and current.role == "admin" and role != "admin" and _admins(session, org) <= 1:
            raise BadRequestError(f"{user} is the last admin of {org_name}: make someone else admin first")
        accounts.add_member(session, org, account, role)


def remove_member(db: Database, org_name: str, *, user: str) -> None:
    """Take ``user`` out of the organisation; never its last admin."""
    with db.write() as session:
        org = accounts.find_account(session, org_name, kind="org")
        account = accounts.find_account(session, user, kind="user")
        current = session.get(Membership, (org.id, account.id))
        if current is None:
            raise BadRequestError(f"{user} is not a member of {org_name}")
        if current.role == "admin" and _admins(session, org) <= 1:
            raise BadRequestError(f"{user} is the last admin of {org_name}: make someone else admin first")
        session.delete(current)
