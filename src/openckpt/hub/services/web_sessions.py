"""Web sessions: what a browser's cookie names once it signed in with an access token, never the token itself.

A session is a row of its own (only the sha256 of its secret is stored) with the account, the role and the token it
signed in with. It ends when signed out, when unused for ``idle`` seconds, ``lifetime`` seconds after sign-in, or
when its token is revoked (:func:`openckpt.hub.services.accounts.revoke_token` deletes the token's sessions; the
lookup also refuses a session whose token is revoked).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from openckpt.errors import UnauthorizedError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Membership, Token, WebSession, utcnow
from openckpt.hub.services.accounts import Principal, authenticate, hash_token

__all__ = ["SECRET_PREFIX", "authenticate_session", "end_session", "sign_in", "sign_out", "start_session"]

SECRET_PREFIX = "ocs_"
"""Session secrets look unlike access tokens (``hf_``…): one is never mistaken for the other."""
TOUCH_EVERY = timedelta(minutes=5)
"""How stale a session's ``last_seen_at`` may get before a request refreshes it: not a write per page view."""

_SESSION_ROWS = (
    select(
        WebSession.id,
        WebSession.role,
        WebSession.token_id,
        WebSession.last_seen_at,
        WebSession.expires_at,
        Token.revoked_at,
        Token.name,
        Account.id,
        Account.name,
        Account.fullname,
        Account.is_admin,
        Membership.org_id,
        Membership.role,
    )
    .join(Account, Account.id == WebSession.account_id)
    .outerjoin(Token, Token.id == WebSession.token_id)
    .outerjoin(Membership, Membership.user_id == Account.id)
    .where(WebSession.digest == bindparam("digest"))
)


def start_session(session: Session, principal: Principal, *, lifetime: int) -> str:
    """A new session of the caller (signed in with the token ``principal`` names) for at most ``lifetime``
    seconds; returns its secret, the cookie's value. Drops the account's expired sessions on the way."""
    now = utcnow()
    expired = delete(WebSession).where(WebSession.account_id == principal.account_id, WebSession.expires_at <= now)
    session.execute(expired)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    row = WebSession(
        digest=hash_token(secret),
        account_id=principal.account_id,
        token_id=principal.token_id,
        role=principal.token_role,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=lifetime),
    )
    session.add(row)
    session.flush()
    return secret


def authenticate_session(db: Database, secret: str, *, idle: int) -> Principal:
    """The principal of a session cookie; :class:`UnauthorizedError` if it is unknown, expired, idle for more than
    ``idle`` seconds, or its token was revoked. Refreshes its last use now and then."""
    if not secret.startswith(SECRET_PREFIX):
        raise UnauthorizedError("not a session: sign in again")
    with db.read() as session:
        rows = session.execute(_SESSION_ROWS, {"digest": hash_token(secret)}).all()
    now = utcnow()
    if not rows:
        raise UnauthorizedError("this session has ended: sign in again")
    session_id, role, token_id, last_seen, expires, revoked, token_name, account_id, name, fullname, is_admin, *_ = (
        rows[0]
    )
    if expires <= now or last_seen + timedelta(seconds=idle) <= now or (token_id is not None and revoked):
        raise UnauthorizedError("this session has ended: sign in again")
    if now - last_seen >= TOUCH_EVERY:
        with db.write() as session:
            session.execute(update(WebSession).where(WebSession.id == session_id).values(last_seen_at=now))
    orgs = {org_id: org_role for *_, org_id, org_role in rows if org_id is not None}
    return Principal(account_id, name, fullname, is_admin, role, token_name or "web session", orgs, token_id=token_id)


def end_session(session: Session, secret: str) -> None:
    """Sign out: the session's row is deleted (an unknown secret is no error)."""
    session.execute(delete(WebSession).where(WebSession.digest == hash_token(secret)))


def sign_in(db: Database, secret: str, *, replacing: str | None, lifetime: int) -> str:
    """A new session for the access token ``secret`` (:class:`UnauthorizedError` if it is unknown or revoked),
    ending the browser's session ``replacing`` (a new sign-in never keeps the old one); the new session's secret."""
    with db.write() as session:
        principal = authenticate(session, secret)
        if replacing:
            end_session(session, replacing)
        return start_session(session, principal, lifetime=lifetime)


def sign_out(db: Database, secret: str) -> None:
    """End the session ``secret`` names (an unknown secret is no error)."""
    with db.write() as session:
        end_session(session, secret)
