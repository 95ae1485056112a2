"""Each account's own token for the mirror's upstreams, sealed at rest (``services/sealed.py``, AES-GCM).

A user's upstream token is used only for that user's reads, never for anyone else's: it is how a mirror reaches the
gated and private upstream repos the user may read. A sealed token is a ``hub_secrets`` row named
``upstream-token:<account id>`` and bound to that name, so it cannot be moved to another account.
"""

from __future__ import annotations

from sqlalchemy import delete

from openckpt.errors import BadRequestError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import HubSecret
from openckpt.hub.services.sealed import seal, unseal

__all__ = ["MAX_TOKEN", "forget", "set_token", "token_of"]

MAX_TOKEN = 128
"""The longest upstream token taken (Hub tokens are 37 characters); its sealed form must fit a ``hub_secrets`` row."""


def _name(account_id: int) -> str:
    return f"upstream-token:{account_id}"


def set_token(db: Database, key: bytes, account_id: int, token: str) -> None:
    """Keep ``token`` (sealed with ``key``) as the upstream token of account ``account_id``, replacing any."""
    token = token.strip()
    if not token or len(token) > MAX_TOKEN or not token.isprintable() or " " in token:
        raise BadRequestError(f"an upstream token is 1 to {MAX_TOKEN} printable characters without spaces")
    with db.write() as session:
        row = session.get(HubSecret, _name(account_id))
        sealed = seal(key, token, owner=_name(account_id))
        if row is None:
            session.add(HubSecret(name=_name(account_id), value=sealed))
        else:
            row.value = sealed


def token_of(db: Database, key: bytes, account_id: int) -> str | None:
    """The upstream token of account ``account_id``, or None."""
    with db.read() as session:
        row = session.get(HubSecret, _name(account_id))
        stored = row.value if row is not None else None
    return unseal(key, stored, owner=_name(account_id)) if stored is not None else None


def forget(db: Database, account_id: int) -> bool:
    """Delete the upstream token of account ``account_id``; whether there was one."""
    with db.write() as session:
        done = session.execute(delete(HubSecret).where(HubSecret.name == _name(account_id)))
    return bool(done.rowcount)  # type: ignore[attr-defined]
