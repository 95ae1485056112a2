"""The hub's signing secret when none is configured: ``<data_dir>/secret.key`` (hex, mode 0600), made on first start.

A configured secret (``OPENCKPT_SECRET``, ``OPENCKPT_SECRET_FILE``) is read by :mod:`openckpt.hub.settings`; the
servers of one hub must share it. Hubs before this one kept the secret in their database (``hub_secrets``), beside
the data it protects:

- a hub with a configured secret deletes the old key from the database (URLs and Xet tokens it signed stop working);
- a SQLite hub moves it to its key file and deletes it from the database (what it signed stays valid);
- a hub on a shared database (PostgreSQL) without a configured secret keeps reading it there, with a warning at
  every start, since its other servers may still rely on it: configure the secret on every server to end that.

On a shared database each server also records a fingerprint of its secret (an HMAC of a fixed text: it reveals
nothing of the secret) and warns when the last server to start had another one: URLs, Xet and form tokens one
signs would be refused by the other.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import uuid
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from openckpt.fsutil import fsync_dir
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import HubSecret
from openckpt.hub.settings import SECRET_KEY_FILE, Settings

__all__ = ["settle_secret"]

log = logging.getLogger("openckpt.hub")
SIGNING = "signing"
"""The name older hubs kept their signing key under in ``hub_secrets``."""
FINGERPRINT = "signing-fingerprint"
"""HMAC-SHA256(secret, a fixed text) as hex: which secret the last server of the hub to start had."""


def settle_secret(db: Database, settings: Settings) -> bytes:
    """The hub's signing secret: the configured one, else the key file (created on first start); moves a key the
    database kept out of it as the module docstring says."""
    with db.read() as session:
        legacy = session.get(HubSecret, SIGNING)
        legacy_value = legacy.value if legacy is not None else None
    shared = not settings.database().startswith("sqlite")
    secret = settings.configured_secret()
    if secret:
        if legacy_value is not None:
            _forget(db)
            log.warning(
                "deleted the signing key older versions kept in the database: OPENCKPT_SECRET(_FILE) "
                "replaces it, so URLs and Xet tokens signed before are no longer valid"
            )
        return _compared(db, secret) if shared else secret
    if legacy_value is not None and shared:
        log.warning(
            "the signing secret is still kept in the database (as older versions did): set "
            "OPENCKPT_SECRET_FILE (a 0600 file) on every server of this hub, then restart them"
        )
        return bytes.fromhex(legacy_value)
    key_file = settings.data_dir / SECRET_KEY_FILE
    if legacy_value is not None:
        _write_key(key_file, legacy_value, replace=True)
        _forget(db)
        log.info("moved the signing secret from the database to %s", key_file)
        return bytes.fromhex(legacy_value)
    if not key_file.is_file():
        _write_key(key_file, secrets.token_hex(32), replace=False)
        if shared:
            log.warning(
                "generated a signing secret in %s: every server of a hub on a shared database must use the "
                "same one, give them OPENCKPT_SECRET_FILE",
                key_file,
            )
    secret = settings.generated_secret()
    return _compared(db, secret) if shared else secret


def _compared(db: Database, secret: bytes) -> bytes:
    """``secret``, its fingerprint recorded; warns if the last server of this hub to start had another one."""
    mark = hmac.new(secret, b"openckpt signing secret fingerprint", hashlib.sha256).hexdigest()
    # another server may record one at the same moment: then compare with theirs below
    with contextlib.suppress(SQLIntegrityError), db.write() as session:
        if session.get(HubSecret, FINGERPRINT) is None:
            session.add(HubSecret(name=FINGERPRINT, value=mark))
    with db.write() as session:
        row = session.get(HubSecret, FINGERPRINT)
        if row is not None and row.value != mark:
            log.warning(
                "another server of this hub started with a different signing secret: URLs, Xet and form tokens "
                "one signs are refused by the other. Give every server the same OPENCKPT_SECRET_FILE"
            )
            row.value = mark
    return secret


def _forget(db: Database) -> None:
    with db.write() as session:
        session.execute(delete(HubSecret).where(HubSecret.name == SIGNING))


def _write_key(path: Path, value: str, *, replace: bool) -> None:
    """Write ``value`` to ``path`` (0600) through a temporary file; without ``replace``, a key another process of
    this hub wrote first wins."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, value.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process of this hub made it first: theirs wins
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
