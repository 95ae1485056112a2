"""Proving a Xet file's sha256: what commits name a file by, which a shard only claims. The file is rebuilt from its
xorbs and hashed once (stored chunks read around the page cache into reused buffers), optionally copied in the same
pass for the upload gate to scan; the pair is then marked verified, or the lying registration dropped.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from sqlalchemy import select

from openckpt.errors import BadRequestError, IntegrityError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob, XetSha256
from openckpt.hub.services import stored_files
from openckpt.hub.services.stored_files import (
    CHUNK_HEADER,
    READERS,
    FilePlan,
    Piece,
    assemble,
    file_plan,
    pieces,
    raw_blobs,
)
from openckpt.store.blobs import BlobStore

__all__ = ["VERIFY_AHEAD", "prove_uploads", "record_check", "verify_sha256"]

VERIFY_AHEAD = 2
"""Pieces of a file whose sha256 is being checked read ahead of the one being hashed."""


def verify_sha256(
    db: Database, blobs: BlobStore, sha256: str, size: int, *, copy_to: Path | None = None, file_hash: str | None = None
) -> bool:
    """Whether a Xet file registered under ``sha256`` with ``size`` (the file ``file_hash``, if given) really has
    that sha256: reconstructed and hashed once, then marked verified. Registrations that lie are dropped. With
    ``copy_to``, the verified bytes are also written there, in the same pass (nothing is left there unless they
    verify)."""
    with db.read() as session:
        query = select(XetSha256).where(XetSha256.sha256 == sha256, XetSha256.size == size)
        if file_hash is not None:
            query = query.where(XetSha256.file_hash == file_hash)
        rows = list(session.scalars(query))
        if any(r.verified for r in rows):
            return True
        plans = [(r.file_hash, file_plan(session, r.file_hash)) for r in rows]
    for file_hash, plan in plans:
        digest = hashlib.sha256()
        if plan is not None and plan.size == size:
            _hash_file(blobs, plan, digest, copy_to)
        ok = plan is not None and plan.size == size and digest.hexdigest() == sha256
        if copy_to is not None and not ok:
            copy_to.unlink(missing_ok=True)
        record_check(db, sha256=sha256, file_hash=file_hash, ok=ok)
        if ok:
            return True
    return False


def record_check(db: Database, *, sha256: str, file_hash: str, ok: bool) -> None:
    """Keep what checking the Xet file ``file_hash`` against ``sha256`` found: the pair verified, or forgotten
    when the rebuilt bytes did not match."""
    with db.write() as session:
        row = session.get(XetSha256, (sha256, file_hash))
        if row is not None and ok:
            row.verified = True
        elif row is not None:
            session.delete(row)


def _hash_file(blobs: BlobStore, plan: FilePlan, digest: hashlib._Hash, copy_to: Path | None) -> None:
    """Hash the bytes of the file ``plan`` describes; with ``copy_to``, write them there in the same pass (each chunk
    copied while it is in the CPU cache, then hashed there). Stored chunks are read by :func:`_read_direct` (no page
    cache on either side), :data:`VERIFY_AHEAD` pieces ahead, into a few buffers reused in turn."""
    from openckpt.store.local import DirectFile
    from openckpt.xet.xorb import PAGE, new_buffer

    ring = [new_buffer(stored_files.READ_BATCH + 2 * PAGE) for _ in range(VERIFY_AHEAD + 2)]
    pending: deque[Future[Sequence[bytes | memoryview]]] = deque()
    copy = DirectFile(copy_to) if copy_to is not None else None

    def take(parts: Sequence[bytes | memoryview]) -> None:
        for part in parts:
            if copy is not None:
                copy.write((part,))
            digest.update(part)

    try:
        for n, piece in enumerate(pieces(plan, 0, plan.size)):
            pending.append(READERS.submit(_load, blobs, piece, ring[n % len(ring)]))
            if len(pending) > VERIFY_AHEAD:
                take(pending.popleft().result())
        while pending:
            take(pending.popleft().result())
    finally:
        for future in pending:
            future.cancel()
        if copy is not None:
            copy.close()


def _load(blobs: BlobStore, piece: Piece, buffer: memoryview) -> Sequence[bytes | memoryview]:
    """The file bytes of ``piece``: views into ``buffer`` where :func:`_read_direct` reads it, else assembled."""
    local = None if piece.term.packed else blobs.local_path(piece.term.blob_sha256)
    if local is not None:
        try:
            parts = _read_direct(local, piece, buffer)
        except FileNotFoundError:
            parts = None
        if parts is not None:
            return parts
    return [assemble(blobs, piece, False)]


def _read_direct(path: Path, piece: Piece, buffer: memoryview) -> list[memoryview] | None:
    """The chunks of ``piece`` as views into ``buffer`` (page-aligned), filled by one read of the xorb's blob around
    the page cache (``read_direct``), if every chunk is whole and stored uncompressed; each chunk header is checked
    against the database. None if the piece is not of that kind."""
    from openckpt.store.local import read_direct
    from openckpt.xet.xorb import CHUNK_HEADER_SIZE, NONE

    spans = piece.spans
    if any((lo, hi) != (0, c.size) or c.byte_end - c.byte_start - CHUNK_HEADER_SIZE != c.size for c, lo, hi in spans):
        return None
    try:
        view = read_direct(path, piece.start, piece.end, buffer)
    except IntegrityError:
        raise IntegrityError(f"xorb {piece.term.xorb} is shorter than recorded") from None
    parts = []
    for chunk, _, _ in spans:
        at = chunk.byte_start - piece.start
        version, clo, chi, scheme, ulo, uhi = CHUNK_HEADER.unpack_from(view, at)
        if (version, scheme, clo | chi << 16, ulo | uhi << 16) != (0, NONE, chunk.size, chunk.size):
            raise IntegrityError(f"stored xorb {piece.term.xorb} is damaged: chunk {chunk.index} has another header")
        parts.append(view[at + CHUNK_HEADER_SIZE : at + CHUNK_HEADER_SIZE + chunk.size])
    return parts


def prove_uploads(
    db: Database, store: BlobStore, files: dict[str, int], *, copies: Path | None = None
) -> dict[str, Path]:
    """Check that every file of ``files`` (sha256 → size) a commit adds is stored: as a blob, or uploaded by Xet
    with its sha256 verified now (by reconstruction) if it was not yet. :class:`BadRequestError` names the first
    that is neither, before anything reads it.

    With ``copies`` (a directory), each file verified now is also written there in the same pass, for the upload
    gate to scan: sha256 → its copy."""
    made: dict[str, Path] = {}
    if not files:
        return made
    with db.read() as session:
        stmt = select(Blob.sha256, Blob.size).where(Blob.sha256.in_(list(files)))
        blobs = dict(session.execute(stmt).tuples().all())
    for sha256, size in files.items():
        if blobs.get(sha256) == size:
            continue
        copy = copies / sha256 if copies is not None else None
        if not verify_sha256(db, raw_blobs(store), sha256, size, copy_to=copy):
            raise BadRequestError(f"LFS object {sha256} ({size} bytes) has not been uploaded")
        if copy is not None and copy.exists():
            made[sha256] = copy
    return made
