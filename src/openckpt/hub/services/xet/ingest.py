"""Server-side ingestion: files that arrived whole (Git LFS, inline files of commits) are chunked into the same
xorb store as Xet uploads, so that every path dedups against every other.

hf_xet itself does the chunking, compression and dedup, pointed at the hub's own CAS with a token only the hub can
mint (repo 0: "the hub"); its upload goes through the same validation as any client's. Once the hub has found the
blob (whose sha256 the store computed as it was written) made of exactly the chunks its registration names, each
checked against its hash when its xorb was stored, the whole blob may be dropped: reads of it (``/resolve``, the
scanner, LFS downloads) are then served by reconstruction, and the blob's ``blobs`` row stays, since the file is
still stored.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob, XetSha256, Xorb
from openckpt.hub.services.file_proofs import record_check, verify_sha256
from openckpt.hub.services.stored_files import FilePlan, file_plan, raw_blobs
from openckpt.hub.services.xet.tokens import CAS_PATH, HUB_REPO, issue_token
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = ["MAX_QUEUED", "MIN_SIZE", "IngestReport", "ingest", "ingest_later"]

log = logging.getLogger("openckpt.hub.xet")
MIN_SIZE = 64 << 10
"""Smaller files are about one chunk (64 KiB on average) or less: nothing to share with other files, and a request
for their few bytes is cheaper served whole than rebuilt."""
BATCH = 16
"""Files handed to one hf_xet upload session."""
TOKEN_TTL = 6 * 3600
PIECE = 4 << 20
"""Bytes of a blob read at once to check it against its chunks."""
COMPRESSION = "none"
"""hf_xet's chunk compression for the hub's own ingestion: none. The blob arrived whole and stored uncompressed, so
nothing is lost; compressing it only for the CAS to decompress it again to check every chunk (the CAS stores chunks
uncompressed) costs CPU twice; a xorb sent uncompressed is stored as it came, and rebuilt by one ``preadv``. The
store's encoding at rest is chosen apart from the client's, after the commit."""


@dataclass
class IngestReport:
    ingested: list[str] = field(default_factory=list)
    """sha256 of the files now backed by xorbs."""
    dropped: list[str] = field(default_factory=list)
    """sha256 of the whole blobs removed from the blob store."""
    failed: dict[str, str] = field(default_factory=dict)


def _candidates(db: Database, sha256s: Iterable[str] | None) -> list[tuple[str, int]]:
    """Stored blobs of at least :data:`MIN_SIZE` that no verified Xet file backes yet (all, or among ``sha256s``)."""
    with db.read() as session:
        stmt = select(Blob.sha256, Blob.size).where(Blob.size >= MIN_SIZE)
        if sha256s is not None:
            stmt = stmt.where(Blob.sha256.in_(list(sha256s)))
        rows = list(session.execute(stmt).tuples())
        backed = set(
            session.scalars(
                select(XetSha256.sha256).where(XetSha256.verified.is_(True), XetSha256.sha256.in_([s for s, _ in rows]))
            )
        )
    return [(s, n) for s, n in rows if s not in backed]


def _upload(blobs: BlobStore, settings: Settings, cas_url: str, batch: list[tuple[str, int]], work: Path) -> None:
    import hf_xet

    os.environ.setdefault("HF_XET_CACHE", str(settings.data_dir / "xet-cache"))  # the hub's own, beside its data
    token, expires = issue_token(settings.secret, "write", HUB_REPO, TOKEN_TTL, minted_by=None)
    config = hf_xet.XetConfig().with_config({"telemetry.enabled": False, "xorb.compression_policy": COMPRESSION})
    with hf_xet.XetSession(config).new_upload_commit(
        endpoint=cas_url, token=token, token_expiry_unix_secs=expires
    ) as commit:
        for sha256, _ in batch:
            path = blobs.local_path(sha256)
            if path is None:  # a remote store: a local copy for hf_xet to read
                path = work / sha256
                with open(path, "wb") as f:
                    for chunk in blobs.read(sha256):
                        f.write(chunk)
            commit.start_upload_file(str(path), sha256=sha256)


def _same_chunks(path: Path, plan: FilePlan, size: int) -> bool:
    """Whether the ``size`` bytes of the file at ``path``, cut where ``plan``'s chunks end, have exactly its chunk
    hashes, in order: then they are the bytes its reconstruction gives, since every stored chunk was checked against
    its hash when its xorb was stored. One read of the file around the page cache, in pieces hashed while they are
    in the CPU cache; the xorbs are not read."""
    from openckpt.store.local import read_direct
    from openckpt.xet.hashes import chunk_hash, hash_to_hex
    from openckpt.xet.xorb import PAGE, new_buffer

    if os.stat(path).st_size != size or plan.size != size:
        return False
    buffer = new_buffer(PIECE + 2 * PAGE)
    chunks = [chunk for term in plan.terms for chunk in term.chunks]
    at = i = 0
    while i < len(chunks):
        j, end = i, at
        while j < len(chunks) and (j == i or end + chunks[j].size - at <= PIECE):
            end += chunks[j].size
            j += 1
        view = read_direct(path, at, end, buffer)
        pos = 0
        for chunk in chunks[i:j]:
            if hash_to_hex(chunk_hash(view[pos : pos + chunk.size])) != chunk.hash:
                return False
            pos += chunk.size
        at, i = end, j
    return at == size


def _verify(db: Database, blobs: BlobStore, sha256: str, size: int) -> bool:
    """Whether the Xet file registered under ``sha256`` rebuilds to exactly the stored blob of that name, and mark
    it verified (as :func:`verify_sha256` does, registrations that differ are dropped). The blob's sha256 is known
    (the store computed it as the blob was written), so the blob's chunks are hashed as the file's terms cut them
    and compared with the chunks stored (:func:`_same_chunks`): one blake3 pass over the blob, where rebuilding
    the file and comparing it read twice its size. A blob the store keeps elsewhere than on a local disk is checked
    by hashing the rebuild."""
    path = blobs.local_path(sha256)
    if path is None:
        return verify_sha256(db, blobs, sha256, size)
    with db.read() as session:
        rows = list(session.scalars(select(XetSha256).where(XetSha256.sha256 == sha256, XetSha256.size == size)))
        if any(r.verified for r in rows):
            return True
        plans = [(r.file_hash, file_plan(session, r.file_hash)) for r in rows]
    for file_hash, plan in plans:
        try:
            ok = plan is not None and _same_chunks(path, plan, size)
        except FileNotFoundError:  # the blob was dropped meanwhile (another process ingested it): hash the rebuild
            return verify_sha256(db, blobs, sha256, size)
        record_check(db, sha256=sha256, file_hash=file_hash, ok=ok)
        if ok:
            return True
    return False


def _drop(db: Database, blobs: BlobStore, sha256: str) -> bool:
    """Remove the whole copy of a file now backed by xorbs, unless its bytes also are a xorb's blob."""
    with db.read() as session:
        if session.scalar(select(Xorb.hash).where(Xorb.blob_sha256 == sha256).limit(1)) is not None:
            return False
    blobs.delete(sha256)
    return True


def ingest(
    db: Database,
    store: BlobStore,
    settings: Settings,
    *,
    cas_url: str | None = None,
    sha256s: Iterable[str] | None = None,
    drop: bool = True,
) -> IngestReport:
    """Chunk stored blobs (all, or ``sha256s``) into the CAS through hf_xet; with ``drop``, remove each whole blob
    once its reconstruction from xorbs has the same sha256. The hub must be serving at ``cas_url`` (default: its
    public URL). Blocking: run it in a worker thread or from the command line."""
    blobs = raw_blobs(store)
    cas_url = cas_url or settings.public_url.rstrip("/") + CAS_PATH
    report = IngestReport()
    todo = [(s, n) for s, n in _candidates(db, sha256s) if blobs.exists(s)]
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        with tempfile.TemporaryDirectory(prefix="openckpt-ingest-") as work:
            try:
                _upload(blobs, settings, cas_url, batch, Path(work))
            except Exception as e:  # the blobs stay as they are: nothing is lost
                log.warning("Xet ingestion of %d files failed: %s", len(batch), e)
                report.failed.update({s: str(e) for s, _ in batch})
                continue
        for sha256, size in batch:
            if not _verify(db, blobs, sha256, size):
                report.failed[sha256] = "its reconstruction from xorbs differs"
                continue
            report.ingested.append(sha256)
            if drop and _drop(db, blobs, sha256):
                report.dropped.append(sha256)
    return report


MAX_QUEUED = 64
"""Commits whose files wait for background ingestion in one process; past it, new ones are left to
``openckpt admin xet-ingest`` (their blobs stay readable as they are)."""
_BACKGROUND = ThreadPoolExecutor(1, thread_name_prefix="openckpt-xet-ingest")
"""One ingestion at a time per process: it competes with requests for the CPU."""
_queued: set[str] = set()
_jobs = 0
_lock = threading.Lock()


def ingest_later(
    db: Database, store: BlobStore, *, settings: Settings, sha256s: Iterable[str]
) -> Future[IngestReport] | None:
    """:func:`ingest` the blobs ``sha256s`` (a commit's new files) in this process's background thread, one job at
    a time; None if nothing was queued (all already queued here, or :data:`MAX_QUEUED` jobs wait). A failure is
    logged and leaves the blobs as they are. Several processes may ingest one blob: uploads to the CAS are
    idempotent, each checks the rebuilt sha256 itself, and dropping a dropped blob is a no-op."""
    global _jobs
    with _lock:
        wanted = [s for s in dict.fromkeys(sha256s) if s not in _queued]
        if not wanted or _jobs >= MAX_QUEUED:
            if wanted:
                log.warning("Xet ingestion queue is full: %d files left as whole blobs", len(wanted))
            return None
        _queued.update(wanted)
        _jobs += 1

    def run() -> IngestReport:
        global _jobs
        try:
            report = ingest(db, store, settings, sha256s=wanted)
            if report.failed:
                log.warning("Xet ingestion left %d files as whole blobs: %s", len(report.failed), report.failed)
            return report
        except Exception:
            log.exception("Xet ingestion failed; the blobs stay as they are")
            raise
        finally:
            with _lock:
                _queued.difference_update(wanted)
                _jobs -= 1

    return _BACKGROUND.submit(run)
