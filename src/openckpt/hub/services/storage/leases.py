"""Leases: a row per piece of work that one process of the hub may do at a time, held until it expires.

Taking a lease is one write transaction (serialised on SQLite, a primary-key insert or a conditional update on
PostgreSQL), so of several workers or servers on one database exactly one wins; a holder that dies lets its lease
expire instead of blocking the others forever.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Lease, utcnow

__all__ = ["acquire", "holder_id", "release"]


def holder_id() -> str:
    """A name for this process that no other process of any server shares."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def acquire(db: Database, name: str, holder: str, ttl: timedelta) -> bool:
    """Take (or renew) lease ``name`` for ``ttl`` if it is free, expired or already ``holder``'s; whether it was."""
    now = utcnow()
    try:
        with db.write() as session:
            lease = session.get(Lease, name)
            if lease is None:
                session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
                session.flush()
                return True
            taken = session.execute(
                update(Lease)
                .where(Lease.name == name, (Lease.expires_at <= now) | (Lease.holder == holder))
                .values(holder=holder, expires_at=now + ttl)
            )
            return bool(taken.rowcount)  # type: ignore[attr-defined]
    except SQLIntegrityError:  # another process inserted it at the same time
        return False


def release(db: Database, name: str, holder: str) -> None:
    """Give lease ``name`` back, if ``holder`` still holds it."""
    with db.write() as session:
        session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))
