"""Signed repos: owners' signing keys, and whether a revision's model-signing bundle verifies against them.

A revision is signed when it holds ``model.sig`` (or another top-level ``*.sig``, a Sigstore bundle v0.3). It is
verified with :func:`openckpt.signing.verify` on the revision's files, hard-linked from the blob store into a
temporary directory (copied when the store is not local), against the keys its owner registered. Results are
cached per (tree, keys): trees are content-addressed, so a tree's answer only changes when the keys do.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError, ConflictError, EntryNotFoundError, OpenckptError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Repo, SigningKey
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.trees import FileEntry
from openckpt.signing.api import SIGNATURE_NAME, verify
from openckpt.signing.keys import key_hint
from openckpt.store.blobs import BlobStore

__all__ = [
    "SignatureStatus",
    "add_key",
    "add_own_key",
    "check_signature",
    "list_keys",
    "parse_public_key",
    "remove_key",
    "remove_own_key",
]

MAX_SIGNATURE = 1 << 20
_CACHE: OrderedDict[tuple[str, ...], SignatureStatus | None] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 256


def parse_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """An EC public key from PEM text; :class:`BadRequestError` otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise BadRequestError(f"not a PEM public key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise BadRequestError("model signatures use EC keys (P-256, P-384): this is not one")
    return key


def add_key(session: Session, account: Account, name: str, pem: str) -> SigningKey:
    """Register a public key ``name`` for ``account``; :class:`ConflictError` if the name is taken."""
    name = name.strip()
    if not name or len(name) > 100:
        raise BadRequestError("a key name has 1 to 100 characters")
    key = parse_public_key(pem)
    if session.scalar(select(SigningKey).where(SigningKey.account_id == account.id, SigningKey.name == name)):
        raise ConflictError(f"{account.name} already has a signing key named {name!r}")
    text = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    row = SigningKey(account_id=account.id, name=name, public_key=text, hint=key_hint(key))
    session.add(row)
    try:
        session.flush()
    except SQLIntegrityError:
        raise ConflictError(f"{account.name} already has a signing key named {name!r}") from None
    return row


def remove_key(session: Session, account: Account, name: str) -> None:
    row = session.scalar(select(SigningKey).where(SigningKey.account_id == account.id, SigningKey.name == name))
    if row is None:
        raise EntryNotFoundError(f"{account.name} has no signing key named {name!r}")
    session.delete(row)


def add_own_key(db: Database, principal: Principal, *, name: str, pem: str) -> SigningKey:
    """Register a public key ``name`` for the caller's account (see :func:`add_key`)."""
    with db.write() as session:
        account = session.get(Account, principal.account_id)
        assert account is not None
        return add_key(session, account, name, pem)


def remove_own_key(db: Database, principal: Principal, *, name: str) -> None:
    """Remove the caller's signing key ``name``; :class:`EntryNotFoundError` if there is none."""
    with db.write() as session:
        account = session.get(Account, principal.account_id)
        assert account is not None
        remove_key(session, account, name)


def list_keys(session: Session, account_id: int) -> list[SigningKey]:
    stmt = select(SigningKey).where(SigningKey.account_id == account_id).order_by(SigningKey.name)
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class SignatureStatus:
    """The signature of a revision: which file, whether it verified, with which key, or why not."""

    file: str
    verified: bool
    signer: str = ""
    """``owner/keyname`` of the key it verified with."""
    reason: str = ""
    files: int = 0


def _signature_file(entries: dict[str, FileEntry]) -> FileEntry | None:
    if SIGNATURE_NAME in entries:
        return entries[SIGNATURE_NAME]
    return next((e for p, e in sorted(entries.items()) if p.endswith(".sig") and "/" not in p), None)


def _materialise(store: BlobStore, entries: dict[str, FileEntry], into: Path) -> None:
    """The revision's files under ``into``: hard links to the store's files where possible, else copies."""
    for path, entry in entries.items():
        target = into / path
        target.parent.mkdir(parents=True, exist_ok=True)
        local = store.local_path(entry.sha256)
        if local is not None:
            try:
                os.link(local, target)
                continue
            except OSError:
                shutil.copyfile(local, target)
                continue
        with open(target, "wb") as f:
            for chunk in store.read(entry.sha256):
                f.write(chunk)


def check_signature(
    session: Session, store: BlobStore, *, repo: Repo, entries: dict[str, FileEntry], tree_id: str, scratch: Path
) -> SignatureStatus | None:
    """The signature status of a revision of ``repo`` (None when it holds no signature)."""
    sig = _signature_file(entries)
    if sig is None:
        return None
    keys = list_keys(session, repo.owner_id)
    cache_key = (tree_id, repo.owner.name, *(f"{k.id}:{k.hint}" for k in keys))
    with _CACHE_LOCK:
        if cache_key in _CACHE:
            _CACHE.move_to_end(cache_key)
            return _CACHE[cache_key]
    status = _verify(store, repo, entries, sig, keys, scratch)
    with _CACHE_LOCK:
        _CACHE[cache_key] = status
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return status


def _verify(
    store: BlobStore, repo: Repo, entries: dict[str, FileEntry], sig: FileEntry, keys: list[SigningKey], scratch: Path
) -> SignatureStatus:
    owner = repo.owner.name
    if not keys:
        return SignatureStatus(sig.path, False, reason=f"{owner} has registered no signing key")
    if sig.size > MAX_SIGNATURE:
        return SignatureStatus(sig.path, False, reason=f"{sig.path} is larger than {MAX_SIGNATURE} bytes")
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="verify-", dir=scratch) as tmp:
        root = Path(tmp) / "model"
        _materialise(store, entries, root)
        reasons = []
        for key in keys:
            try:
                verified = verify(root, signature=root / sig.path, public_key=parse_public_key(key.public_key))
            except OpenckptError as e:
                reasons.append((key, str(e).replace(str(root) + "/", "").replace(str(root), ".")))
                continue
            return SignatureStatus(sig.path, True, signer=f"{owner}/{key.name}", files=len(verified.files))
    # a failure other than "not this key" (files differ, malformed bundle) explains best what is wrong
    hinted = [r for k, r in reasons if "does not verify" not in r] or [r for _, r in reasons]
    return SignatureStatus(sig.path, False, reason=hinted[0])
