"""A bucket's files: listing by prefix (pages by path), paths info, and batches of adds, copies and deletes.

A file is a ``bucket_files`` row naming a Xet file by its hash; its bytes are the CAS's, so a bucket file deduplicates
with every repo and every other bucket, and adding or copying one moves no bytes. A batch writes all its valid
operations in one transaction: each file becomes visible whole, at once, with the others of its batch. Adding a Xet
file needs the caller to have it (proof of possession, as for repo commits: :mod:`openckpt.hub.services.possession`):
a shard of theirs registered it, or they may read a bucket holding it. Copying names its source, which the caller
must be able to read and which must hold the file; from a repo, only a file its scan gate does not withhold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError, HubError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Bucket, BucketFile, Upload, XetFile, utcnow
from openckpt.hub.services import access, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.buckets.registry import find_bucket
from openckpt.hub.services.names import check_path
from openckpt.hub.services.xet import meta as xet_meta
from openckpt.hub.settings import Settings

__all__ = ["PAGE", "Operation", "apply_batch", "holds", "list_tree", "parse_operation", "paths_info"]

PAGE = 1000
"""Entries in one page of a tree listing; the next page's URL is in the ``Link`` header."""
_HASH = re.compile(r"[0-9a-f]{64}")
_BATCH = 500
_OPS = ("addFile", "copyFile", "deleteFile")


@dataclass
class Operation:
    """One line of a batch: ``type`` is ``addFile``, ``copyFile`` or ``deleteFile``."""

    type: str
    path: str
    xet_hash: str = ""
    mtime: int = 0
    content_type: str | None = None
    source_type: str = ""
    source_id: str = ""
    size: int = field(default=0, init=False)


def parse_operation(item: Any) -> Operation:
    """A batch line as an :class:`Operation`; a :class:`BadRequestError` for one that is not."""
    if not isinstance(item, dict) or item.get("type") not in _OPS or not isinstance(item.get("path"), str):
        raise BadRequestError("expected {type: addFile|copyFile|deleteFile, path, xetHash?, mtime?} on each line")
    op = Operation(item["type"], check_path(item["path"]))
    if op.type == "deleteFile":
        return op
    xet_hash, mtime, kind = item.get("xetHash"), item.get("mtime"), item.get("contentType")
    if not isinstance(xet_hash, str) or not _HASH.fullmatch(xet_hash):
        raise BadRequestError(f"{op.path}: xetHash must be 64 lowercase hex digits")
    if mtime is not None and (not isinstance(mtime, int) or isinstance(mtime, bool) or mtime < 0):
        raise BadRequestError(f"{op.path}: mtime must be milliseconds since the epoch")
    op.xet_hash, op.mtime = xet_hash, mtime if mtime is not None else 0
    op.content_type = kind[:255] if isinstance(kind, str) else None
    if op.type == "copyFile":
        source_type, source_id = item.get("sourceRepoType"), item.get("sourceRepoId")
        if source_type not in ("bucket", "model", "dataset", "space") or not isinstance(source_id, str):
            raise BadRequestError(f"{op.path}: sourceRepoType must be bucket, model, dataset or space")
        op.source_type, op.source_id = source_type, source_id
    return op


# ---- reads ------------------------------------------------------------------------------------------------------


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (None if there is none)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF and not 0xD7FF <= last < 0xE000:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def _rows(
    session: Session, bucket: int, *, prefix: str, after: tuple[str, bool] | None, limit: int
) -> list[BucketFile]:
    """Up to ``limit`` files whose path starts with ``prefix``, by path, from ``after`` (path, inclusive) on."""
    query = select(BucketFile).where(BucketFile.bucket_id == bucket)
    if prefix:
        query = query.where(BucketFile.path >= prefix)
        upper = _successor(prefix)
        if upper is not None:
            query = query.where(BucketFile.path < upper)
    if after is not None:
        key, inclusive = after
        query = query.where(BucketFile.path >= key if inclusive else BucketFile.path > key)
    return list(session.scalars(query.order_by(BucketFile.path).limit(limit)))


def list_tree(
    session: Session, bucket: int, *, prefix: str, recursive: bool, cursor: str | None, limit: int = PAGE
) -> tuple[list[BucketFile | str], str | None]:
    """One page of a listing and the cursor of the next (None on the last page).

    Paths match ``prefix`` as strings (``logs`` also lists ``logs.json``, as the Hub does); recursive listings list
    files only, others the files and folders (``str``) one level below the prefix's folder.
    """
    depth = len(prefix.rstrip("/").split("/")) if prefix.rstrip("/") else 0
    after: tuple[str, bool] | None = None
    if cursor:
        kind, _, key = cursor.partition(":")
        after = (key + "0", True) if kind == "d" else (key, False)  # "0" follows "/": past the folder's files
    found: list[BucketFile | str] = []
    while len(found) < limit:
        rows = _rows(session, bucket, prefix=prefix, after=after, limit=limit - len(found) if recursive else limit)
        if not rows:
            return found, None
        inside: str | None = None
        for row in rows:
            if inside is not None and row.path.startswith(inside):
                continue  # a file of the folder just listed (its files are contiguous in path order)
            parts = row.path.split("/")
            if recursive or len(parts) <= depth + 1:
                found.append(row)
                after = (row.path, False)
            else:
                folder = "/".join(parts[: depth + 1])
                found.append(folder)
                after, inside = (folder + "0", True), folder + "/"  # the next query starts past the folder
            if len(found) == limit:
                break
    last = found[-1]
    return found, (f"d:{last}" if isinstance(last, str) else f"f:{last.path}")


def paths_info(session: Session, bucket: int, *, paths: Iterable[str]) -> list[BucketFile]:
    """The files among ``paths`` that exist, in the order asked."""
    wanted = list(dict.fromkeys(p for p in paths if isinstance(p, str)))
    found: dict[str, BucketFile] = {}
    for start in range(0, len(wanted), _BATCH):
        batch = wanted[start : start + _BATCH]
        query = select(BucketFile).where(BucketFile.bucket_id == bucket, BucketFile.path.in_(batch))
        found.update((row.path, row) for row in session.scalars(query))
    return [found[p] for p in wanted if p in found]


def holds(session: Session, bucket: int, *, xet_hash: str) -> bool:
    """Whether the bucket has a file of the Xet file ``xet_hash`` (what its CAS tokens may read)."""
    query = select(BucketFile.path).where(BucketFile.bucket_id == bucket, BucketFile.xet_hash == xet_hash).limit(1)
    return session.scalar(query) is not None


def _held(session: Session, bucket: int, hashes: Iterable[str]) -> set[str]:
    """The Xet files among ``hashes`` that the bucket has files of."""
    found: set[str] = set()
    for batch in _chunks(hashes):
        query = select(BucketFile.xet_hash).where(BucketFile.bucket_id == bucket, BucketFile.xet_hash.in_(batch))
        found.update(session.scalars(query.distinct()))
    return found


# ---- possession -------------------------------------------------------------------------------------------------


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    wanted = sorted(set(items))
    for start in range(0, len(wanted), _BATCH):
        yield wanted[start : start + _BATCH]


def _possessed(session: Session, principal: Principal, hashes: Iterable[str]) -> set[str]:
    """The Xet files among ``hashes`` the caller has: registered by a shard of theirs, or in a bucket they may read.
    (A repo's files come by ``copyFile`` naming the repo, which also asks the scan gate: a file it withholds there
    must not be served from a bucket.)"""
    wanted = set(hashes)
    if principal.is_admin or not wanted:
        return wanted
    have: set[str] = set()
    visible = or_(Bucket.private.is_(False), Bucket.owner_id.in_([principal.account_id, *principal.orgs]))
    for batch in _chunks(wanted):
        mine = and_(Upload.account_id == principal.account_id, Upload.file_hash.in_(batch))
        have.update(session.scalars(select(Upload.file_hash).where(mine)))
        rest = [h for h in batch if h not in have]
        held = select(BucketFile.xet_hash).join(Bucket, Bucket.id == BucketFile.bucket_id)
        have.update(session.scalars(held.where(BucketFile.xet_hash.in_(rest), visible).distinct()) if rest else ())
    return have


def _copyable(session: Session, settings: Settings, *, principal: Principal, ops: list[Operation]) -> dict[int, str]:
    """Index → error of the copies whose source the caller cannot read or that does not hold the file."""
    failed: dict[int, str] = {}
    for source in {(op.source_type, op.source_id) for op in ops}:
        mine = [(i, op) for i, op in enumerate(ops) if (op.source_type, op.source_id) == source]
        try:
            if source[0] == "bucket":
                pk = find_bucket(session, source[1], principal=principal).id
                ok = _held(session, pk, {op.xet_hash for _, op in mine})
            else:
                repo = repos.find_repo(session, principal, repo_type=source[0], repo_id=source[1])
                access.check_download(session, principal, repo=repo, path="")
                hashes = {op.xet_hash for _, op in mine}
                ok = {h for h in hashes if xet_meta.may_reconstruct(session, settings, repo.id, h)}
        except HubError as e:
            failed.update((i, str(e)) for i, _ in mine)
            continue
        missing = [(i, op) for i, op in mine if op.xet_hash not in ok]
        failed.update((i, f"no file with Xet hash {op.xet_hash} in {source[1]}") for i, op in missing)
    return failed


# ---- batches ----------------------------------------------------------------------------------------------------


def _check(session: Session, settings: Settings, *, principal: Principal, ops: list[Operation]) -> dict[int, str]:
    """Index → error of each add or copy that cannot be done; sets the size of the others."""
    adds = [(i, op) for i, op in enumerate(ops) if op.type == "addFile"]
    copies = [(i, op) for i, op in enumerate(ops) if op.type == "copyFile"]
    sizes: dict[str, int] = {}
    for batch in _chunks(op.xet_hash for _, op in [*adds, *copies]):
        sizes.update(session.execute(select(XetFile.hash, XetFile.size).where(XetFile.hash.in_(batch))).tuples().all())
    have = _possessed(session, principal, [op.xet_hash for _, op in adds if op.xet_hash in sizes])
    failed = {i: f"Xet file {op.xet_hash} has not been uploaded" for i, op in adds if op.xet_hash not in have}
    bad = _copyable(session, settings, principal=principal, ops=[op for _, op in copies])
    failed.update((copies[j][0], error) for j, error in bad.items())
    for i, op in [*adds, *copies]:
        if i not in failed and op.xet_hash not in sizes:
            failed[i] = f"Xet file {op.xet_hash} has not been uploaded"
        op.size = sizes.get(op.xet_hash, 0)
    return failed


def _write(session: Session, bucket: int, *, ops: list[Operation]) -> None:
    """Apply ``ops`` in order (a later operation on a path wins): upserts and deletes of rows."""
    final: dict[str, Operation] = {}
    for op in ops:
        final[op.path] = op
    now = utcnow()
    gone = [p for p, op in final.items() if op.type == "deleteFile"]
    for start in range(0, len(gone), _BATCH):
        session.execute(
            delete(BucketFile).where(BucketFile.bucket_id == bucket, BucketFile.path.in_(gone[start : start + _BATCH]))
        )
    rows = [
        {
            "bucket_id": bucket,
            "path": p,
            "xet_hash": op.xet_hash,
            "size": op.size,
            "mtime": op.mtime,
            "content_type": op.content_type,
            "uploaded_at": now,
        }
        for p, op in final.items()
        if op.type != "deleteFile"
    ]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for start in range(0, len(rows), _BATCH):
        stmt = insert(BucketFile).values(rows[start : start + _BATCH])
        keep = ("xet_hash", "size", "mtime", "content_type", "uploaded_at")
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["bucket_id", "path"], set_={k: getattr(stmt.excluded, k) for k in keep}
            )
        )
    if final:
        session.get_one(Bucket, bucket).updated_at = now


def apply_batch(
    db: Database, settings: Settings, *, principal: Principal, bucket_id: str, ops: list[Operation]
) -> list[dict[str, str]]:
    """Apply the operations the caller may make, all in one transaction; return the others as ``{path, error}``."""
    for attempt in range(2):
        with db.read() as session:
            find_bucket(session, bucket_id, principal=principal, write=True)
            failed = _check(session, settings, principal=principal, ops=ops)
        try:
            with db.write() as session:
                bucket = find_bucket(session, bucket_id, principal=principal, write=True)
                _write(session, bucket.id, ops=[op for i, op in enumerate(ops) if i not in failed])
            break
        except SQLIntegrityError:  # a Xet file collected meanwhile (too old to keep): checked again, then refused
            if attempt == 1:
                raise
    return [{"path": ops[i].path, "error": error} for i, error in sorted(failed.items())]
