"""LFS multipart uploads: parts in the hub's shared blob store, recorded in its shared database, joined on completion.

Any server of a hub takes any part and any completion: a part streams into the blob store (hashed on the way, its md5
the ETag) and its row goes to ``lfs_parts``, replacing the row of an earlier upload of the same part; completion reads
the recorded parts back in order into one blob verified against the announced sha256 and size, then drops the rows,
then the part blobs.

A part blob starts with a header unique to that upload of that part, so its name is no other object's: dropping it
(once joined, replaced or abandoned) can never take bytes a blob, a xorb or another part still needs, and nothing
ever serves it as a file. The garbage collector keeps every blob a row names and calls :func:`sweep_abandoned`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exc, insert, select, update
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError, OpenckptError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob, LfsPart, utcnow
from openckpt.hub.services.lfs.transfers import commit_blob, in_thread, pump
from openckpt.hub.services.stored_files import raw_blobs
from openckpt.store.blobs import BlobStore, BlobWriter, is_sha256

__all__ = ["HEADER_SIZE", "MAX_PARTS", "complete", "part_blobs", "part_size", "receive_part", "sweep_abandoned"]

MAX_PARTS = 10_000
"""Parts one upload may have, as in S3: larger files get larger parts."""
RETRIES = 3
"""Attempts at recording a part that a concurrent request records too (PostgreSQL: a unique violation)."""


def _header() -> bytes:
    return b"openckpt lfs part %s\n" % uuid.uuid4().hex.encode()


HEADER_SIZE = len(_header())
"""Bytes before a part's own bytes in its blob."""


def part_size(size: int, chunk_size: int) -> int:
    """The size of each part (but the last) of a file of ``size`` bytes: ``chunk_size``, or larger if the file would
    otherwise need over :data:`MAX_PARTS` parts."""
    return max(chunk_size, -(-size // MAX_PARTS))


def _check(sha256: str, size: int, number: int = 1) -> None:
    if not is_sha256(sha256) or size < 0 or number < 1 or number > MAX_PARTS:
        raise BadRequestError("invalid multipart upload")


async def receive_part(
    store: BlobStore, db: Database, sha256: str, size: int, number: int, body: AsyncIterator[bytes], limit: int
) -> str:
    """Store part ``number`` (at most ``limit`` bytes) of the upload of blob ``sha256`` of ``size`` bytes, in place
    of any earlier upload of that part; return its ETag (md5, as S3 does)."""
    _check(sha256, size, number)
    blobs = raw_blobs(store)
    hint = HEADER_SIZE + max(0, min(limit, size - (number - 1) * limit))  # ``limit`` is the chunk size handed out
    writer = await in_thread(_open, blobs, hint)
    md5 = hashlib.md5(usedforsecurity=False)

    def write(batch: list[bytes]) -> None:
        for chunk in batch:
            md5.update(chunk)
        writer.write_all(batch)

    try:
        received = await pump(body, write, limit, f"part {number}")
    except BaseException:
        await asyncio.shield(in_thread(writer.abort))
        raise
    etag = md5.hexdigest()
    row = {"sha256": sha256, "size": size, "number": number, "part_size": received, "etag": etag}
    await in_thread(_record, blobs, db, writer, row)
    return etag


def _open(blobs: BlobStore, size_hint: int) -> BlobWriter:
    writer = blobs.writer(size_hint)
    try:
        writer.write(_header())
    except BaseException:
        writer.abort()
        raise
    return writer


def _record(blobs: BlobStore, db: Database, writer: BlobWriter, row: dict[str, Any]) -> None:
    """Publish the part's blob, then its row in place of the same part's earlier row; drop the replaced blob."""
    part_sha256 = writer.commit()  # aborts (removes the temp data) if it fails
    try:
        replaced = _replace(db, {**row, "part_sha256": part_sha256, "created_at": utcnow()})
    except BaseException:
        _discard(blobs, [part_sha256])
        raise
    _discard(blobs, replaced)


def _replace(db: Database, row: dict[str, Any]) -> list[str]:
    """Record ``row`` in place of any row of the same part; return the part blobs of the rows it replaced."""
    same = (LfsPart.sha256 == row["sha256"], LfsPart.size == row["size"], LfsPart.number == row["number"])
    for attempt in range(1, RETRIES + 1):
        try:
            with db.write() as session:
                replaced = list(session.scalars(delete(LfsPart).where(*same).returning(LfsPart.part_sha256)))
                session.execute(insert(LfsPart).values(**row))
                return replaced
        except exc.IntegrityError:  # a concurrent upload of this part recorded it first: replace that one
            if attempt == RETRIES:
                raise
    raise AssertionError("unreachable")


def _discard(blobs: BlobStore, part_blobs: Iterable[str]) -> None:
    """Delete part blobs no row names any more (one that resists is an orphan the collector removes later)."""
    for key in part_blobs:
        with contextlib.suppress(OpenckptError, OSError):
            blobs.delete(key)


async def complete(store: BlobStore, db: Database, sha256: str, size: int, parts: list[int]) -> bool:
    """Join the recorded parts ``parts`` (numbered 1..N) in order into the blob ``sha256`` of ``size`` bytes, visible
    only if it verifies; then drop every part of the upload. An upload joined already (a retried completion) is done.
    Whether these parts made the verified bytes (also when the blob was stored already: sending them proves that the
    uploader has them)."""
    return await in_thread(_complete, raw_blobs(store), db, sha256, size, parts)


def _complete(blobs: BlobStore, db: Database, sha256: str, size: int, parts: list[int]) -> bool:
    _check(sha256, size)
    if parts != list(range(1, len(parts) + 1)):
        raise BadRequestError("parts must be numbered 1..N without gaps")
    with db.write() as session:  # the join restarts the parts' abandonment clock: the collector waits for it
        session.execute(
            update(LfsPart).where(LfsPart.sha256 == sha256, LfsPart.size == size).values(created_at=utcnow())
        )
        recorded = {
            number: (key, n)
            for number, key, n in session.execute(
                select(LfsPart.number, LfsPart.part_sha256, LfsPart.part_size).where(
                    LfsPart.sha256 == sha256, LfsPart.size == size
                )
            )
        }
    joined = False
    if not (missing := [number for number in parts if number not in recorded]):
        joined = _join(blobs, db, sha256, size, [(number, *recorded[number]) for number in parts])
    elif not _stored(db, sha256, size):  # else joined already, by this upload or another one
        raise BadRequestError(f"part {missing[0]} was not uploaded")
    _drop(blobs, db, sha256, size)
    return joined


def _stored(db: Database, sha256: str, size: int) -> bool:
    with db.read() as session:
        blob = session.get(Blob, sha256)
        return blob is not None and blob.size == size


def _join(blobs: BlobStore, db: Database, sha256: str, size: int, parts: list[tuple[int, str, int]]) -> bool:
    """Write parts ``(number, part_sha256, part_size)`` in order into the verified blob ``sha256``; False if they
    were not all there any more because a concurrent completion joined them first."""
    writer = blobs.writer(size, sha256=sha256)
    try:
        for number, key, part_size in parts:
            _copy_part(blobs, writer, number, key, part_size)
    except OpenckptError:
        writer.abort()
        if _stored(db, sha256, size):  # a concurrent completion (a retry) joined them and dropped the parts
            return False
        raise
    except BaseException:
        writer.abort()
        raise
    commit_blob(writer, db, sha256, size)
    return True


def _copy_part(blobs: BlobStore, writer: BlobWriter, number: int, key: str, part_size: int) -> None:
    stat = blobs.stat(key)
    if stat is None or stat.size != HEADER_SIZE + part_size:  # gone meanwhile (abandoned, or replaced)
        raise BadRequestError(f"part {number} was not uploaded")
    for chunk in blobs.read(key, HEADER_SIZE):
        writer.write_all((chunk if isinstance(chunk, bytes) else bytes(chunk),))  # raw stores read bytes


def _drop(blobs: BlobStore, db: Database, sha256: str, size: int) -> None:
    with db.write() as session:
        where = (LfsPart.sha256 == sha256, LfsPart.size == size)
        dropped = list(session.scalars(delete(LfsPart).where(*where).returning(LfsPart.part_sha256)))
    _discard(blobs, dropped)


def part_blobs(session: Session, keys: list[str]) -> set[str]:
    """The blobs among ``keys`` that hold recorded parts."""
    return set(session.scalars(select(LfsPart.part_sha256).where(LfsPart.part_sha256.in_(keys))))


def sweep_abandoned(db: Database, store: BlobStore, older_than: datetime) -> int:
    """Remove the parts recorded before ``older_than`` (rows, then blobs): uploads nobody completes any more, once
    ``older_than`` is earlier than the signed URLs' lifetime ago. Return how many parts went."""
    with db.write() as session:
        stale = delete(LfsPart).where(LfsPart.created_at < older_than).returning(LfsPart.part_sha256)
        dropped = list(session.scalars(stale))
    _discard(raw_blobs(store), dropped)
    return len(dropped)
