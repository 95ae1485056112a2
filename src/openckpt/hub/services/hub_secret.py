"""The hub's signing secret, kept in the database so that every server and worker of one hub shares it."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import HubSecret

__all__ = ["load_secret"]

SIGNING = "signing"


def load_secret(db: Database, *, legacy: Path | None = None) -> bytes:
    """The signing secret; the first server to ask creates it (from ``legacy``, a hex key file of older hubs that
    kept it in their data dir, if there is one, so that URLs it signed stay valid)."""
    with db.read() as session:
        row = session.get(HubSecret, SIGNING)
    if row is None:
        value = secrets.token_hex(32)
        if legacy is not None and legacy.is_file():
            value = bytes.fromhex(legacy.read_text().strip()).hex()
        try:
            with db.write() as session:
                if session.get(HubSecret, SIGNING) is None:
                    session.add(HubSecret(name=SIGNING, value=value))
        except SQLIntegrityError:
            pass  # another server created it first: use theirs
        with db.read() as session:
            row = session.get(HubSecret, SIGNING)
        assert row is not None
    return bytes.fromhex(row.value)
