"""Secrets the hub must give back, such as webhook secrets (sent to the receiver, shown to their owner), sealed at
rest: AES-256-GCM under a key derived by HKDF-SHA256 from the hub's signing secret, which the database does not hold.
A copy of the database alone reveals none of them.

A sealed value reads ``sealed1:<base64url(nonce ‖ ciphertext ‖ tag)>`` and is bound to what it belongs to (a
webhook's id), so it cannot be moved to another row. Values older hubs stored in plaintext are sealed when a hub
starts (:func:`seal_webhook_secrets`). Rotating the signing secret leaves sealed values unreadable: their webhooks are
delivered without a secret (logged) until their owners set it again.
"""

from __future__ import annotations

import base64
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Webhook

__all__ = ["PREFIX", "seal", "seal_webhook_secrets", "sealing_key", "unseal"]

log = logging.getLogger("openckpt.hub")
PREFIX = "sealed1:"
NONCE = 12


def sealing_key(signing_secret: bytes) -> bytes:
    """The 256-bit key secrets are sealed with, derived from (and rotated with) the hub's signing secret."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"openckpt sealed secrets v1")
    return hkdf.derive(signing_secret)


def seal(key: bytes, value: str, *, owner: str) -> str:
    """``value`` encrypted for storage in the row ``owner`` names (e.g. ``webhook:<id>``)."""
    nonce = os.urandom(NONCE)
    sealed = AESGCM(key).encrypt(nonce, value.encode(), owner.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(key: bytes, stored: str, *, owner: str) -> str | None:
    """The value :func:`seal` stored for ``owner``; a plaintext value (of an older hub) as it is; None if it cannot
    be opened (sealed under another signing secret, or moved from another row)."""
    if not stored.startswith(PREFIX):
        return stored
    try:
        raw = base64.urlsafe_b64decode(stored[len(PREFIX) :])
        return AESGCM(key).decrypt(raw[:NONCE], raw[NONCE:], owner.encode()).decode()
    except (InvalidTag, ValueError):
        log.error("cannot open the sealed secret of %s: was the hub's signing secret changed?", owner)
        return None


def seal_webhook_secrets(db: Database, key: bytes) -> int:
    """Seal the webhook secrets still stored in plaintext (by older hubs); how many were."""
    with db.write() as session:
        plain = session.scalars(select(Webhook).where(Webhook.secret.is_not(None), ~Webhook.secret.startswith(PREFIX)))
        count = 0
        for hook in plain:
            assert hook.secret is not None
            hook.secret = seal(key, hook.secret, owner=f"webhook:{hook.id}")
            count += 1
    if count:
        log.info("sealed %d webhook secret(s) stored in plaintext", count)
    return count
