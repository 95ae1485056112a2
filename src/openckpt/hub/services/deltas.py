"""Deltas for derivatives: a fine-tune's xorbs stored as XOR against its base's bytes, then packed
(:mod:`openckpt.xet.delta`), in the background after a commit, where that measures smaller than packing alone.

Which bytes have a base is :mod:`.delta_bases`' (tensors matched by name, shape and dtype with a declared
``base_model``'s files, else with a stored file of the same tensors). A job reads a xorb (as uploaded, kept or
packed) and checks its chunk hashes, XORs and packs it, decodes the result back against the bases read afresh and
compares it byte for byte, writes it as a new store object (temp → fsync → rename by the store's writer), then
switches the ``xorbs`` row in one transaction that also records the bases (``xorb_delta_bases``), only if the row
still names the object it read, no delta names the xorb as its base, and every base is still stored and not a
delta: so deltas are one level deep, and GC (which keeps every recorded base) never frees a base a delta needs. A
SIGKILL at any point leaves the old row (the new object unnamed: GC frees it) or the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from openckpt.errors import IntegrityError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Xorb, XorbChunk, XorbDeltaBase
from openckpt.hub.services import compression
from openckpt.hub.services.delta_bases import non_delta, plan_segments
from openckpt.hub.services.delta_reads import DELTA, BaseXorb, base_reader
from openckpt.store.blobs import BlobStore
from openckpt.xet import delta, packed
from openckpt.xet.hashes import chunk_hash, hex_to_hash

__all__ = ["DELTA", "DeltaReport", "candidates", "encode_deltas", "encode_later", "encode_xorb"]

log = logging.getLogger("openckpt.hub.deltas")
MIN_SAVING = compression.MIN_SAVING
"""A delta must be smaller than the xorb's plain packing by this share of it."""


@dataclass
class DeltaReport:
    deltas: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Xorb → (bytes stored before, bytes of its delta)."""
    skipped: list[str] = field(default_factory=list)
    """Xorbs with no base, or whose delta saved too little."""
    failed: dict[str, str] = field(default_factory=dict)


class _ChangedError(Exception):
    """The row, a base or the xorb's role changed since it was read: nothing switches."""


def _chunks(blobs: BlobStore, row: Xorb, spans: list[tuple[str, int, int, int]]) -> list[bytes | memoryview]:
    """The xorb's chunks unpacked, each checked against its hash."""
    if row.encoding == compression.PACKED:
        chunks: list[bytes | memoryview] = list(
            compression.read_chunks(blobs, row.blob_sha256, 0, len(spans), fresh=True)
        )
    else:
        chunks = list(compression._chunks_as_uploaded(blobs, row, spans))
    for (h, size, _, _), chunk in zip(spans, chunks, strict=True):
        if len(chunk) != size or chunk_hash(chunk) != hex_to_hash(h):
            raise IntegrityError(f"xorb {row.hash} does not hold its chunks")
    return chunks


def _decodes_to(body: bytes, chunks: list[bytes | memoryview], read: delta.BaseRead, table: delta.DeltaTable) -> bool:
    """Whether the delta object ``body`` decodes (bases read afresh) to exactly ``chunks``."""
    index = packed.parse_index(body)
    xored = packed.read_chunks(index, lambda at, n: body[at : at + n], 0, len(chunks))
    out = bytearray(b"".join(xored))
    delta.apply(out, 0, table, read)
    return bytes(out) == b"".join(chunks)


def encode_xorb(db: Database, blobs: BlobStore, xorb: str, report: DeltaReport) -> None:
    """Store one xorb as a delta, if its files' tensors have a base and that saves on its plain packing."""
    with db.read() as session:
        row = session.get(Xorb, xorb)
        if row is None or row.encoding == DELTA or _is_base(session, xorb):
            return
        session.expunge(row)
        spans = list(
            session.execute(
                select(XorbChunk.chunk_hash, XorbChunk.unpacked_size, XorbChunk.byte_start, XorbChunk.byte_end)
                .where(XorbChunk.xorb_hash == xorb)
                .order_by(XorbChunk.chunk_index)
            ).tuples()
        )
        offsets = [0]
        for _, size, _, _ in spans:
            offsets.append(offsets[-1] + size)
        found = plan_segments(session, blobs, xorb=xorb, offsets=offsets)
    if found is None:
        report.skipped.append(xorb)
        return
    names, segments, bases = found
    table = delta.checked(names, segments, offsets[-1])
    chunks = _chunks(blobs, row, spans)
    body = delta.encode(chunks, table, base_reader(blobs, table, bases))
    plain = row.stored_size if row.encoding == compression.PACKED and row.stored_size else None
    if plain is None:
        plain = len(packed.pack(chunks)) if row.encoding == compression.AS_UPLOADED else row.serialized_size
    if len(body) > plain * (1 - MIN_SAVING):
        report.skipped.append(xorb)
        return
    if not _decodes_to(body, chunks, base_reader(blobs, table, bases, fresh=True), table):
        raise IntegrityError(f"the delta of xorb {xorb} does not decode to its chunks")
    writer = blobs.writer(len(body))
    try:
        writer.write(body)
    except BaseException:
        writer.abort()
        raise
    key = writer.commit(expected_size=len(body))
    try:
        _switch(db, row, key=key, size=len(body), bases=bases, sizes=[size for _, size, _, _ in spans])
    except _ChangedError as e:
        log.info("xorb %s stays as it is: %s", xorb, e)
        report.skipped.append(xorb)
        return
    report.deltas[xorb] = (row.stored_size or row.serialized_size, len(body))


def _is_base(session: Session, xorb: str) -> bool:
    return session.scalar(select(XorbDeltaBase.xorb_hash).where(XorbDeltaBase.base_xorb == xorb).limit(1)) is not None


def _switch(db: Database, row: Xorb, *, key: str, size: int, bases: Mapping[str, BaseXorb], sizes: list[int]) -> None:
    """Name the delta object ``key`` in the xorb's row and record its bases, in one transaction, if nothing changed
    (:class:`_ChangedError` otherwise). Locks are taken in an order that makes concurrent switches see each other: the
    xorb's own row first, then its bases' rows (PostgreSQL; SQLite serialises write transactions)."""
    offsets = packed.served_offsets(sizes)
    with db.write() as session:
        mine = session.execute(
            select(Xorb.blob_sha256, Xorb.encoding).where(Xorb.hash == row.hash).with_for_update()
        ).first()
        if mine is None or tuple(mine) != (row.blob_sha256, row.encoding):
            raise _ChangedError("its row changed since it was read")
        if _is_base(session, row.hash):
            raise _ChangedError("a delta names it as its base")
        session.execute(insert(XorbDeltaBase), [{"xorb_hash": row.hash, "base_xorb": b} for b in bases])
        locked = session.execute(select(Xorb.hash).where(Xorb.hash.in_(list(bases))).with_for_update()).all()
        if len(locked) != len(bases) or not non_delta(session, bases):
            raise _ChangedError("a base is gone or became a delta")
        session.execute(
            update(Xorb)
            .where(Xorb.hash == row.hash)
            .values(blob_sha256=key, encoding=DELTA, stored_size=size, serialized_size=offsets[-1])
        )
        if row.encoding != compression.PACKED:  # the served layout: every chunk uncompressed after its header
            chunk_rows: Any = XorbChunk.__table__
            assert isinstance(chunk_rows, Table)
            session.connection().execute(
                update(chunk_rows)
                .where(chunk_rows.c.xorb_hash == bindparam("x"), chunk_rows.c.chunk_index == bindparam("i"))
                .values(byte_start=bindparam("s"), byte_end=bindparam("e")),
                [{"x": row.hash, "i": i, "s": offsets[i], "e": offsets[i + 1]} for i in range(len(sizes))],
            )


def candidates(db: Database, sha256s: Iterable[str] | None) -> list[str]:
    """Xorbs not stored as deltas (all, or those holding the verified Xet files of ``sha256s``)."""
    with db.read() as session:
        stmt = select(Xorb.hash).where(Xorb.encoding != DELTA)
        if sha256s is not None:
            stmt = stmt.where(Xorb.hash.in_(compression.xorbs_holding(sha256s)))
        return list(session.scalars(stmt.order_by(Xorb.created_at, Xorb.hash)))


def encode_deltas(db: Database, blobs: BlobStore, *, sha256s: Iterable[str] | None = None) -> DeltaReport:
    """Store as deltas every xorb that has a base and saves by it (all, or those of the files ``sha256s``);
    blocking. A xorb that fails stays as it was."""
    report = DeltaReport()
    for xorb in candidates(db, sha256s):
        try:
            encode_xorb(db, blobs, xorb, report)
        except Exception as e:  # the xorb stays as it was: nothing is lost
            log.warning("delta of xorb %s failed: %s", xorb, e)
            report.failed[xorb] = str(e)
    return report


_BACKGROUND = ThreadPoolExecutor(1, thread_name_prefix="openckpt-deltas")


def encode_later(
    db: Database, blobs: BlobStore, *, sha256s: Iterable[str], after: Future[Any] | None = None
) -> Future[DeltaReport]:
    """:func:`encode_deltas` for the files ``sha256s`` in this process's background thread, once ``after`` (their
    compression job) is done."""
    wanted = list(sha256s)

    def run() -> DeltaReport:
        if after is not None:
            after.exception()  # waits; whatever it did, the xorbs are read as they are now
        return encode_deltas(db, blobs, sha256s=wanted)

    return _BACKGROUND.submit(run)
