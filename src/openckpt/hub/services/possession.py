"""Proof of possession: a commit may name an LFS or Xet-backed object by its sha256 only if the caller has it.

The caller has an object if their account uploaded it (verified LFS bytes sent through a transfer URL signed for
them, or a Xet file a shard of theirs registered under that sha256, once that registration is verified to hash to
it), or if they may read the files of a repo whose commits added it (``repo_objects``; for a gated repo that means
granted access, not just a visible tree): the repo committed to is one of these, so its own history stays
nameable. An admin reads everything, so has everything. Any other object is missing for the caller exactly as if
the hub did not store it: a commit naming it fails as for an object never uploaded, the LFS batch asks for an upload
(the store deduplicates the bytes; sending them proves possession), and verifying it answers 404.

Every route that names content by hash asks here: commits (and so ``CommitOperationCopy``), the LFS batch and its
verify endpoint. ``repo_objects`` rows are added by the commit flow for each LFS file it adds, copied by
``duplicate_repo``, removed by the LFS purge and with their repo; ``uploads`` rows expire with the grace period of
garbage collection (an upload not committed by then is swept anyway).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from openckpt.errors import BadRequestError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import AccessRequest, Blob, Repo, RepoObject, Token, Upload, XetSha256, utcnow
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.file_proofs import prove_uploads, verify_sha256
from openckpt.hub.services.stored_files import raw_blobs, xet_files
from openckpt.store.blobs import BlobStore

__all__ = [
    "copy_objects",
    "forget_objects",
    "forget_uploads",
    "index_objects",
    "missing",
    "possessed",
    "record_upload",
    "record_xet_uploads",
    "refresh_uploads",
    "require",
    "stored_sizes",
]

_BATCH = 500


def missing(oid: str, size: int) -> BadRequestError:
    """The error of a commit naming an object the hub does not have, or the caller does not: the same for both."""
    return BadRequestError(f"LFS object {oid} ({size} bytes) has not been uploaded")


def _readable(principal: Principal) -> ColumnElement[bool]:
    """Repos whose files the caller may download: as ``repos.find_repo`` and ``access.has_access`` decide."""
    if principal.is_admin:
        return true()
    granted = exists().where(
        AccessRequest.repo_id == Repo.id,
        AccessRequest.user_id == principal.account_id,
        AccessRequest.status == "accepted",
    )
    members = Repo.owner_id.in_([principal.account_id, *principal.orgs])
    return or_(members, and_(Repo.private.is_(False), or_(Repo.gated.is_(None), granted)))


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    wanted = sorted(set(items))
    for start in range(0, len(wanted), _BATCH):
        yield wanted[start : start + _BATCH]


def possessed(session: Session, principal: Principal, oids: Iterable[str]) -> set[str]:
    """The objects among ``oids`` the caller has (see the module): whether the hub stores them is not asked."""
    wanted = set(oids)
    if principal.is_admin or not wanted:
        return wanted
    have: set[str] = set()
    readable = _readable(principal)
    for batch in _chunks(wanted):
        have.update(
            session.scalars(
                select(RepoObject.sha256)
                .join(Repo, Repo.id == RepoObject.repo_id)
                .where(RepoObject.sha256.in_(batch), readable)
                .distinct()
            )
        )
        rest = [o for o in batch if o not in have]
        if not rest:
            continue
        mine = (Upload.account_id == principal.account_id, Upload.sha256.in_(rest))
        have.update(session.scalars(select(Upload.sha256).where(*mine, Upload.file_hash == "")))
        have.update(
            session.scalars(
                select(Upload.sha256)
                .join(XetSha256, and_(XetSha256.sha256 == Upload.sha256, XetSha256.file_hash == Upload.file_hash))
                .where(*mine, XetSha256.verified.is_(True))
            )
        )
    return have


def _registrations(session: Session, principal: Principal, oids: Collection[str]) -> dict[str, list[str]]:
    """sha256 → the Xet files the caller's shards registered under it, verified or not yet."""
    found: dict[str, list[str]] = {}
    for batch in _chunks(oids):
        rows = session.execute(
            select(Upload.sha256, Upload.file_hash).where(
                Upload.account_id == principal.account_id, Upload.sha256.in_(batch), Upload.file_hash != ""
            )
        )
        for sha256, file_hash in rows.tuples():
            found.setdefault(sha256, []).append(file_hash)
    return found


def stored_sizes(session: Session, principal: Principal, oids: Iterable[str]) -> dict[str, int]:
    """Sizes of the objects among ``oids`` that the hub stores (a blob, or a Xet file whose sha256 is verified) and
    the caller has: what the caller may name without uploading."""
    have = possessed(session, principal, oids)
    sizes: dict[str, int] = {}
    for batch in _chunks(have):
        sizes.update(session.execute(select(Blob.sha256, Blob.size).where(Blob.sha256.in_(batch))).tuples().all())
    for oid, (_, size) in xet_files(session, [o for o in have if o not in sizes]).items():
        sizes[oid] = size
    return sizes


def require(
    db: Database, store: BlobStore, principal: Principal, files: Mapping[str, int], *, copies: Path | None = None
) -> dict[str, Path]:
    """The commit flow's check of the LFS files it adds (sha256 → size): each is stored and the caller has it, else
    :func:`missing` names the first that is not. Xet uploads are verified (see ``cas_files.prove_uploads``, whose
    ``copies`` this returns); a Xet file the caller registered counts once that registration of theirs verifies."""
    if not files:
        return {}
    with db.read() as session:
        have = possessed(session, principal, files)
        claims = _registrations(session, principal, [o for o in files if o not in have])
    for oid, size in files.items():
        if oid not in have and oid not in claims:
            raise missing(oid, size)  # before anything reads or verifies the object
    made = prove_uploads(db, store, dict(files), copies=copies)
    for oid, hashes in claims.items():
        mine = any(verify_sha256(db, raw_blobs(store), oid, files[oid], file_hash=h) for h in hashes)
        if not mine:
            raise missing(oid, files[oid])
    return made


# ---- records ----------------------------------------------------------------------------------------------------


def _upsert(
    session: Session, model: type[Upload | RepoObject], rows: list[dict[str, Any]], *, refresh: dict[str, Any]
) -> None:
    """Insert ``rows`` into ``model``'s table; a row there already gets ``refresh`` (or stays as it is)."""
    if not rows:
        return
    keys = [column.name for column in model.__mapper__.primary_key]
    stmt = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(model).values(rows)
    if refresh:
        session.execute(stmt.on_conflict_do_update(index_elements=keys, set_=refresh))
    else:
        session.execute(stmt.on_conflict_do_nothing(index_elements=keys))


def record_upload(db: Database, account_id: int, sha256: str) -> None:
    """Account ``account_id`` sent the bytes of the blob ``sha256`` (verified): it has it now."""
    now = utcnow()
    with db.write() as session:
        row = {"account_id": account_id, "sha256": sha256, "file_hash": "", "created_at": now}
        _upsert(session, Upload, [row], refresh={"created_at": now})


def record_xet_uploads(session: Session, minted_by: int, files: Iterable[tuple[str, str]]) -> None:
    """A shard sent with a Xet token of the access token ``minted_by`` registered the Xet files ``(sha256, file
    hash)``: uploads of that token's account (possession once each registration is verified). A file without a
    sha256 (``""``: bucket uploads skip it) is had by its Xet hash alone: the shard's terms proved its chunks."""
    account = session.scalar(select(Token.account_id).where(Token.id == minted_by))
    if account is None:
        return
    now = utcnow()
    rows = [{"account_id": account, "sha256": s, "file_hash": f, "created_at": now} for s, f in sorted(set(files))]
    _upsert(session, Upload, rows, refresh={"created_at": now})


def refresh_uploads(session: Session, account_id: int, sha256s: Iterable[str]) -> None:
    """Restart the lifetime of the caller's uploads of ``sha256s`` (an LFS batch told them not to send these)."""
    for batch in _chunks(sha256s):
        session.execute(
            update(Upload).where(Upload.account_id == account_id, Upload.sha256.in_(batch)).values(created_at=utcnow())
        )


def forget_uploads(db: Database, *, older_than: datetime) -> int:
    """Drop the records of uploads made before ``older_than`` (garbage collection's cutoff); return how many."""
    with db.write() as session:
        gone = session.execute(delete(Upload).where(Upload.created_at < older_than))
        return int(gone.rowcount or 0)  # type: ignore[attr-defined]


def index_objects(session: Session, repo_id: int, sha256s: Iterable[str]) -> None:
    """A commit of repo ``repo_id`` adds the LFS files ``sha256s``: its readers have them from now on."""
    rows = [{"repo_id": repo_id, "sha256": s} for s in sorted(set(sha256s))]
    for start in range(0, len(rows), _BATCH):
        _upsert(session, RepoObject, rows[start : start + _BATCH], refresh={})


def copy_objects(session: Session, source_id: int, target_id: int) -> None:
    """The new repo ``target_id`` holds the history of ``source_id`` (a duplicate): and so its objects."""
    held = select(RepoObject.sha256).where(RepoObject.repo_id == source_id)
    index_objects(session, target_id, list(session.scalars(held)))


def forget_objects(session: Session, repo_id: int, sha256s: Iterable[str]) -> None:
    """Repo ``repo_id``'s history no longer holds ``sha256s`` (purged): its readers no longer have them through it."""
    for batch in _chunks(sha256s):
        session.execute(delete(RepoObject).where(RepoObject.repo_id == repo_id, RepoObject.sha256.in_(batch)))
