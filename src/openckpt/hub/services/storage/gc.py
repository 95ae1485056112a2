"""Garbage collection of the hub's storage: mark what any commit reaches, sweep the rest once it is old enough.

Kept (marked): every commit a branch or tag reaches through its parents (the whole history stays downloadable, not
just heads), and every commit younger than the grace period; every file of those commits — its blob, and the Xet
files its sha256 names (``xet_sha256`` → ``xet_files`` → ``xet_terms`` → ``xorbs``); every Xet file a bucket names
now (``bucket_files``: what a bucket's deleted or overwritten files alone used goes); every Xet file, blob or xorb
younger than the grace period, and the xorbs of young Xet files (a client may be between uploading xorbs, its shard
and its commit); every base xorb a delta names (``xorb_delta_bases``: the database refuses to drop one; a base whose
deltas are swept goes in the next collection). Swept: the rest — commits no ref reaches any more (a deleted branch's
own commits), trees no commit uses, and what only they named — database rows first in one transaction (so nothing
can reference a half deleted object), then their store objects; then the parts of LFS multipart uploads abandoned
for longer than the signed URLs' lifetime plus the grace period (rows, then blobs: :mod:`.lfs_parts`); then store
objects no row names (a blob, a xorb or a recorded part) that are older than the grace period (a server killed
mid-upload), and the temp files and multipart uploads abandoned uploads left behind.

Safety against concurrent uploads: the sweep transaction re-checks every candidate under the database's write lock
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: locks on the tables a commit reads, taken once no transaction holds them,
never waited for, so that requests wait for the sweep but never deadlock with it), and an object is deleted only if
no row names it right before and it was not written during the grace period. A part of an LFS multipart upload is
stored before its row names it (young until then) and under a name no other object has: the rows of abandoned parts
go in one ``DELETE … RETURNING``, then exactly the blobs those rows named.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, delete, literal_column, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from openckpt.errors import StorageBusyError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import (
    Blob,
    BucketFile,
    Commit,
    Ref,
    TreeItem,
    XetFile,
    XetSha256,
    XetTerm,
    Xorb,
    XorbChunk,
    XorbDeltaBase,
    utcnow,
)
from openckpt.hub.services import possession
from openckpt.hub.services.lfs import parts as lfs_parts
from openckpt.hub.services.storage import leases
from openckpt.hub.services.stored_files import raw_blobs
from openckpt.hub.services.trees import files_reached, reach
from openckpt.store.blobs import BlobStore

__all__ = ["DEFAULT_GRACE", "DEFAULT_URL_TTL", "GC_LEASE", "GcReport", "collect", "keep_alive"]

DEFAULT_GRACE = timedelta(hours=1)
DEFAULT_URL_TTL = timedelta(hours=1)
"""How long the hub's signed transfer URLs stay valid (``signed_url_ttl``) unless the caller says otherwise."""
GC_LEASE = "storage-gc"
"""The lease one garbage collection at a time holds (of all workers and servers on one database)."""
LEASE_TTL = timedelta(hours=6)
"""How long a run may hold the lease before another may assume it died."""
LOCK_PATIENCE = 60.0
"""PostgreSQL: seconds the sweep keeps trying to take its table locks (never waiting for them) before giving up."""
ROW_LOCK_TIMEOUT_MS = 5000
"""PostgreSQL: how long a delete of the sweep may wait for a row lock."""
LOCK_NOT_AVAILABLE = "55P03"
BATCH = 500
Progress = Callable[[str, int, int | None], None]
"""``progress(phase, done, total)``; total None while unknown."""
T = TypeVar("T")


@dataclass
class GcReport:
    """What a collection removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    grace_seconds: float
    commits: int = 0
    """Commits no branch or tag reaches any more."""
    trees: int = 0
    """Trees no commit uses any more (their rows)."""
    blobs: int = 0
    blob_bytes: int = 0
    xet_files: int = 0
    xorbs: int = 0
    xorb_bytes: int = 0
    orphans: int = 0
    """Store objects no row named, older than the grace period."""
    orphan_bytes: int = 0
    abandoned: int = 0
    """Temp files and S3 multipart uploads abandoned before the grace period; parts of LFS multipart uploads
    abandoned before the signed URLs' lifetime plus the grace period."""
    spared: int = 0
    """Objects of swept rows that were written again during the sweep (a concurrent upload of the same bytes)."""
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def bytes_reclaimed(self) -> int:
        return self.blob_bytes + self.xorb_bytes + self.orphan_bytes

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_reclaimed": self.bytes_reclaimed}


@dataclass
class _Plan:
    """Candidates of the mark phase; the sweep re-checks each one under the write lock."""

    commits: list[str]
    trees: list[str]
    blobs: list[str]
    files: list[str]
    xorbs: list[str]


def _batches(items: Iterable[T], size: int = BATCH) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---- mark -------------------------------------------------------------------------------------------------------


def _unreachable(session: Session, cutoff: Any) -> list[str]:
    """Commits older than ``cutoff`` that no branch or tag reaches through parents."""
    parents: dict[str, str | None] = {}
    old: list[str] = []
    for commit, parent, created in session.execute(select(Commit.id, Commit.parent_id, Commit.created_at)):
        parents[commit] = parent
        if created < cutoff:
            old.append(commit)
    reached: set[str] = set()
    todo = [c for c in session.scalars(select(Ref.commit_id)) if c in parents]
    while todo:
        commit = todo.pop()
        if commit in reached:
            continue
        reached.add(commit)
        parent = parents.get(commit)
        if parent is not None and parent in parents:
            todo.append(parent)
    return [c for c in old if c not in reached]


def _roots(which: Any = None) -> Select[Any, str]:
    """The root trees of the commits ``which`` selects (all if None), as :func:`trees.reach` takes them."""
    roots: Select[Any, str] = select(literal_column("0").label("key"), Commit.tree_id.label("tree_id"))
    return roots if which is None else roots.where(which)


def _reached(session: Session, roots: Select[Any, str]) -> set[str]:
    """Every tree (root or folder) that the root trees ``roots`` reach."""
    return set(session.scalars(select(reach(roots).c.tree_id)))


def _mark(session: Session, cutoff: Any) -> _Plan:
    commits = _unreachable(session, cutoff)
    dead = set(commits)
    roots = _roots(Commit.id.not_in(commits) if dead else None)
    live_trees = _reached(session, roots)
    trees = sorted(set(session.scalars(select(TreeItem.tree_id).distinct())) - live_trees)
    live_sha = set(session.scalars(select(files_reached(roots).subquery().c.sha256).distinct()))
    blobs = [s for s in session.scalars(select(Blob.sha256).where(Blob.created_at < cutoff)) if s not in live_sha]
    live_files: set[str] = set()
    for sha256, file_hash, created in session.execute(
        select(XetSha256.sha256, XetSha256.file_hash, XetSha256.created_at)
    ):
        if sha256 in live_sha or created >= cutoff:  # committed, or registered lately for a commit to come
            live_files.add(file_hash)
    live_files.update(session.scalars(select(BucketFile.xet_hash).distinct()))  # in a bucket now
    old_files = session.scalars(select(XetFile.hash).where(XetFile.created_at < cutoff))
    files = sorted(set(old_files) - live_files)
    dead_files = set(files)
    used = {
        x for f, x in session.execute(select(XetTerm.file_hash, XetTerm.xorb_hash).distinct()) if f not in dead_files
    }
    used.update(session.scalars(select(XorbDeltaBase.base_xorb).distinct()))  # a delta's bases (swept after it)
    xorbs = sorted(set(session.scalars(select(Xorb.hash).where(Xorb.created_at < cutoff))) - used)
    return _Plan(commits, trees, blobs, files, xorbs)


# ---- sweep: rows ------------------------------------------------------------------------------------------------


def _lock(session: Session) -> None:
    """PostgreSQL: take the tables a commit or a bucket write reads (commits, blobs, verified Xet files, trees, bucket
    files) once no transaction uses them, and keep new ones out until the sweep commits; no new term may name a xorb
    meanwhile. ``NOWAIT``: the sweep never waits holding locks, so it can never deadlock a request (the caller retries
    instead). SQLite's ``BEGIN IMMEDIATE`` already serialises writers."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text(f"SET LOCAL lock_timeout = {ROW_LOCK_TIMEOUT_MS}"))
    tables = "commits, blobs, xet_sha256, tree_items, bucket_files"
    session.execute(text(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE NOWAIT"))
    session.execute(text("LOCK TABLE xet_terms IN SHARE MODE NOWAIT"))


def _sweep_locked(db: Database, plan: _Plan, cutoff: Any) -> _Swept:
    """:func:`_sweep_rows` in one transaction under :func:`_lock`, retried while the locks are taken elsewhere."""
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            with db.write() as session:
                _lock(session)
                return _sweep_rows(session, plan, cutoff)
        except DBAPIError as e:
            refused = getattr(e.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE
            if refused and time.monotonic() < deadline:
                time.sleep(random.uniform(0.02, 0.2))
                continue
            why = "its table locks stayed taken" if refused else type(e.orig).__name__
            raise StorageBusyError(f"the sweep could not run now ({why}); try again later") from e


@dataclass
class _Swept:
    commits: int = 0
    trees: int = 0
    blobs: list[str] = field(default_factory=list)
    files: int = 0
    xorbs: dict[str, int] = field(default_factory=dict)
    """blob sha256 → serialized size of each swept xorb."""


def _sweep_rows(session: Session, plan: _Plan, cutoff: Any) -> _Swept:
    swept = _Swept()
    commits = _unreachable(session, cutoff)  # again, under the lock: refs may have moved since the mark
    trees = set(plan.trees)
    for batch in _batches(commits):
        trees.update(_reached(session, _roots(Commit.id.in_(batch))))
        session.execute(delete(Commit).where(Commit.id.in_(batch)))
    swept.commits = len(commits)
    live_trees = _reached(session, _roots())
    for batch in _batches(sorted(t for t in trees if t not in live_trees)):
        swept.trees += len(batch)
        session.execute(delete(TreeItem).where(TreeItem.tree_id.in_(batch)))
    # every tree entry left belongs to a commit (or to a tree orphaned since the mark: kept this time)
    for batch in _batches(plan.blobs):
        named = set(session.scalars(select(TreeItem.sha256).where(TreeItem.sha256.in_(batch))))
        young = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(batch), Blob.created_at >= cutoff)))
        dead = [s for s in batch if s not in named and s not in young]
        session.execute(delete(Blob).where(Blob.sha256.in_(dead)))
        swept.blobs += dead
    for batch in _batches(plan.files):
        named = set(
            session.scalars(
                select(XetSha256.file_hash)
                .join(TreeItem, TreeItem.sha256 == XetSha256.sha256)
                .where(XetSha256.file_hash.in_(batch))
            )
        )
        named.update(session.scalars(select(BucketFile.xet_hash).where(BucketFile.xet_hash.in_(batch))))
        young = set(
            session.scalars(
                select(XetSha256.file_hash).where(XetSha256.file_hash.in_(batch), XetSha256.created_at >= cutoff)
            )
        )
        young.update(session.scalars(select(XetFile.hash).where(XetFile.hash.in_(batch), XetFile.created_at >= cutoff)))
        dead = [f for f in batch if f not in named and f not in young]
        for table, column in ((XetSha256, XetSha256.file_hash), (XetTerm, XetTerm.file_hash), (XetFile, XetFile.hash)):
            session.execute(delete(table).where(column.in_(dead)))
        swept.files += len(dead)
    for batch in _batches(plan.xorbs):
        used = set(session.scalars(select(XetTerm.xorb_hash).where(XetTerm.xorb_hash.in_(batch)).distinct()))
        used.update(session.scalars(select(XorbDeltaBase.base_xorb).where(XorbDeltaBase.base_xorb.in_(batch))))
        rows = session.execute(
            select(Xorb.hash, Xorb.blob_sha256, Xorb.serialized_size).where(
                Xorb.hash.in_(batch), Xorb.created_at < cutoff
            )
        ).all()
        unused = [(x, blob, size) for x, blob, size in rows if x not in used]
        names = [x for x, _, _ in unused]
        session.execute(delete(XorbChunk).where(XorbChunk.xorb_hash.in_(names)))
        session.execute(delete(XorbDeltaBase).where(XorbDeltaBase.xorb_hash.in_(names)))
        session.execute(delete(Xorb).where(Xorb.hash.in_(names)))
        swept.xorbs.update({blob: size for _, blob, size in unused})
    return swept


# ---- sweep: store objects ---------------------------------------------------------------------------------------


def _named(db: Database, keys: list[str]) -> set[str]:
    """The keys among ``keys`` a row names now: a blob, the bytes of a xorb, or a part of an unfinished upload."""
    with db.read() as session:
        named = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(keys))))
        named.update(session.scalars(select(Xorb.blob_sha256).where(Xorb.blob_sha256.in_(keys))))
        named.update(lfs_parts.part_blobs(session, keys))
    return named


def _delete_unnamed(
    db: Database, blobs: BlobStore, keys: Iterable[str], cutoff: float, report: GcReport, *, dry_run: bool
) -> list[tuple[str, int]]:
    """Delete the objects among ``keys`` that no row names and nothing wrote since ``cutoff``; return them."""
    gone: list[tuple[str, int]] = []
    for batch in _batches(keys):
        named = _named(db, batch)
        for key in batch:
            if key in named:
                continue
            stat = blobs.stat(key)
            if stat is None:
                continue
            if stat.modified > cutoff:
                report.spared += 1
                continue
            if not dry_run:
                blobs.delete(key)
            gone.append((key, stat.size))
    return gone


def _sweep_multipart(directory: Path, cutoff: float) -> int:
    """Remove LFS multipart uploads (``<oid>/`` of parts) nothing was written to since ``cutoff``: what versions that
    kept parts in the data dir left there."""
    removed = 0
    for upload in directory.iterdir() if directory.is_dir() else ():
        try:
            newest = max([upload.stat().st_mtime, *(p.stat().st_mtime for p in upload.iterdir())])
        except (FileNotFoundError, NotADirectoryError):
            continue
        if newest <= cutoff:
            shutil.rmtree(upload, ignore_errors=True)
            removed += 1
    return removed


# ---- the collection ---------------------------------------------------------------------------------------------


def keep_alive(
    session: Session, *, blobs: Iterable[str] = (), xorbs: Iterable[str] = (), files: Iterable[str] = ()
) -> None:
    """Restart the grace period of stored objects a client was just told it need not upload again (an LFS batch
    answering "stored", a xorb upload or shard naming a known xorb or file): the client will commit them soon."""
    now = utcnow()
    for model, column, keys in ((Blob, Blob.sha256, blobs), (Xorb, Xorb.hash, xorbs), (XetFile, XetFile.hash, files)):
        for batch in _batches(keys):
            session.execute(update(model).where(column.in_(batch)).values(created_at=now))


def collect(
    db: Database,
    store: BlobStore,
    *,
    grace: timedelta = DEFAULT_GRACE,
    url_ttl: timedelta = DEFAULT_URL_TTL,
    dry_run: bool = False,
    multipart_dir: Path | None = None,
    progress: Progress | None = None,
) -> GcReport:
    """Remove what no commit reaches and is older than ``grace`` (see the module); ``dry_run`` only counts.

    Parts of LFS multipart uploads go once recorded longer than ``url_ttl`` (the hub's ``signed_url_ttl``: no URL
    to complete them is valid any more) plus ``grace`` ago. ``multipart_dir`` is where earlier versions kept parts
    (``<data_dir>/multipart``). One collection runs at a time per database: another one running is a
    :class:`StorageBusyError`, as is a lock not granted in time.
    """
    started = time.monotonic()
    note = progress or (lambda phase, done, total: None)
    blobs = raw_blobs(store)
    report = GcReport(dry_run, grace.total_seconds())
    holder = leases.holder_id()
    if not dry_run and not leases.acquire(db, GC_LEASE, holder, LEASE_TTL):
        raise StorageBusyError("another garbage collection is running on this hub's database; try again later")
    try:
        cutoff, cutoff_ts = utcnow() - grace, time.time() - grace.total_seconds()
        note("marking", 0, None)
        with db.read() as session:
            plan = _mark(session, cutoff)
        if dry_run:
            _count_plan(db, blobs, plan, report)
        else:
            note("sweeping rows", 0, None)
            swept = _sweep_locked(db, plan, cutoff)
            report.commits, report.trees, report.blobs = swept.commits, swept.trees, len(swept.blobs)
            report.xet_files = swept.files
            report.xorbs = len(swept.xorbs)
            note("deleting objects", 0, len(swept.blobs) + len(swept.xorbs))
            gone = dict(_delete_unnamed(db, blobs, [*swept.blobs, *swept.xorbs], cutoff_ts, report, dry_run=False))
            report.blob_bytes = sum(gone.get(s, 0) for s in swept.blobs)
            report.xorb_bytes = sum(gone.get(s, 0) for s in swept.xorbs)
            report.abandoned += lfs_parts.sweep_abandoned(db, store, cutoff - url_ttl)
            possession.forget_uploads(db, older_than=cutoff)  # uploads not committed since: swept with their bytes
        note("scanning the store", 0, None)
        orphans = _delete_unnamed(db, blobs, blobs.keys(), cutoff_ts, report, dry_run=dry_run)
        report.orphans, report.orphan_bytes = len(orphans), sum(size for _, size in orphans)
        if not dry_run:
            report.abandoned += blobs.sweep(grace.total_seconds())
            if multipart_dir is not None:
                report.abandoned += _sweep_multipart(multipart_dir, cutoff_ts)
    finally:
        if not dry_run:
            leases.release(db, GC_LEASE, holder)
    report.seconds = time.monotonic() - started
    return report


def _count_plan(db: Database, blobs: BlobStore, plan: _Plan, report: GcReport) -> None:
    """A dry run's figures: the candidates of the mark, as the sweep would find them now."""
    report.commits, report.trees, report.blobs, report.xet_files, report.xorbs = (
        len(plan.commits),
        len(plan.trees),
        len(plan.blobs),
        len(plan.files),
        len(plan.xorbs),
    )
    for sha256 in plan.blobs:
        stat = blobs.stat(sha256)
        report.blob_bytes += stat.size if stat is not None else 0
    with db.read() as session:
        for batch in _batches(plan.xorbs):
            sizes = session.scalars(select(Xorb.serialized_size).where(Xorb.hash.in_(batch)))
            report.xorb_bytes += sum(sizes)
