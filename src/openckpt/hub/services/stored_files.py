"""Files stored as Xet terms: where their bytes are, reading any range of them back, and proving their sha256.

A file a shard registered is a list of terms, each a run of chunks of one xorb; a xorb is one blob of the blob store.
:class:`XetFileStore` puts this behind the blob store's own interface, so that everything reading files by sha256
(downloads, the scanner, signatures, cards) reads Xet-backed files without knowing where their bytes live.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from openckpt.errors import IntegrityError, XetFormatError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import XetFile, XetSha256, XetTerm, Xorb, XorbChunk
from openckpt.store.blobs import BlobStat, BlobStore, BlobWriter

__all__ = [
    "ChunkSpan",
    "FilePlan",
    "READERS",
    "Piece",
    "XetFileStore",
    "assemble",
    "file_plan",
    "pieces",
    "raw_blobs",
    "read_file",
    "xet_files",
]

READ_BATCH = 4 << 20
"""Serialized bytes of a xorb read (and decoded) at once when reconstructing a file: measured fastest (8 MiB pieces
were 2x slower, their buffers come fresh from the kernel each time)."""
READ_AHEAD = 1
"""Pieces of a file being reconstructed ahead of the one its reader consumes."""
READERS = ThreadPoolExecutor(4, thread_name_prefix="openckpt-xet-read")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
CHUNK_HEADER = struct.Struct("<BHBBHB")
"""A xorb chunk header (protocol spec §4.2): version, compressed u24 (lo16, hi8), scheme, uncompressed u24."""


@dataclass(frozen=True)
class ChunkSpan:
    """One chunk of a file: where it sits in its xorb's blob, and how many bytes it unpacks to."""

    index: int
    hash: str
    size: int
    byte_start: int
    byte_end: int


@dataclass(frozen=True)
class Term:
    xorb: str
    blob_sha256: str
    chunk_start: int
    chunks: list[ChunkSpan]
    packed: bool = False
    """The xorb's object is packed (:mod:`.storage_compression`): its chunks are read by decoding frames."""
    bases: Mapping[str, Any] | None = None
    """The xorb is a delta (its object packed too): its bases, as :func:`.delta_reads.bases_of` read them."""

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)


@dataclass(frozen=True)
class FilePlan:
    """A Xet file: its hash, size and terms with the byte ranges of their chunks."""

    hash: str
    size: int
    terms: list[Term]


def xet_files(session: Session, sha256s: Iterable[str]) -> dict[str, tuple[str, int]]:
    """sha256 → (Xet file hash, size) of the files among ``sha256s`` whose Xet bytes were verified."""
    wanted = list(set(sha256s))
    if not wanted:
        return {}
    rows = session.execute(
        select(XetSha256.sha256, XetSha256.file_hash, XetSha256.size).where(
            XetSha256.sha256.in_(wanted), XetSha256.verified.is_(True)
        )
    ).tuples()
    return {sha256: (file_hash, size) for sha256, file_hash, size in rows}


def file_plan(session: Session, file_hash: str) -> FilePlan | None:
    """The terms of a registered file with their chunks, or None if no such file is registered."""
    terms = list(session.scalars(select(XetTerm).where(XetTerm.file_hash == file_hash).order_by(XetTerm.term_index)))
    if not terms:
        known = session.get(XetFile, file_hash)
        return None if known is None else FilePlan(file_hash, 0, [])
    xorbs = {t.xorb_hash for t in terms}
    stmt = select(Xorb.hash, Xorb.blob_sha256, Xorb.encoding).where(Xorb.hash.in_(xorbs))
    found = session.execute(stmt).tuples().all()
    blobs = {x: blob for x, blob, _ in found}
    packed = {x for x, _, encoding in found if encoding in (1, 3)}
    deltas = {x for x, _, encoding in found if encoding == 3}
    if deltas:  # their bases are read with them
        from openckpt.hub.services.delta_reads import bases_of

        bases: Mapping[str, Mapping[str, Any]] = bases_of(session, deltas)
    else:
        bases = {}
    covering: dict[str, tuple[int, int]] = {}  # per xorb, the chunk range covering all its terms
    for t in terms:
        lo, hi = covering.get(t.xorb_hash, (t.chunk_start, t.chunk_end))
        covering[t.xorb_hash] = (min(lo, t.chunk_start), max(hi, t.chunk_end))
    ranges = or_(
        *(
            and_(XorbChunk.xorb_hash == x, XorbChunk.chunk_index >= lo, XorbChunk.chunk_index < hi)
            for x, (lo, hi) in covering.items()
        )
    )
    rows = session.execute(
        select(
            XorbChunk.xorb_hash,
            XorbChunk.chunk_index,
            XorbChunk.chunk_hash,
            XorbChunk.unpacked_size,
            XorbChunk.byte_start,
            XorbChunk.byte_end,
        ).where(ranges)
    ).tuples()
    chunks = {(x, i): ChunkSpan(i, h, size, start, end) for x, i, h, size, start, end in rows}
    planned = []
    for t in terms:
        spans = [chunks.get((t.xorb_hash, i)) for i in range(t.chunk_start, t.chunk_end)]
        if t.xorb_hash not in blobs or any(s is None for s in spans):
            raise IntegrityError(f"Xet file {file_hash} references chunks the CAS does not have")
        kept = [s for s in spans if s is not None]
        planned.append(
            Term(t.xorb_hash, blobs[t.xorb_hash], t.chunk_start, kept, t.xorb_hash in packed, bases.get(t.xorb_hash))
        )
    return FilePlan(file_hash, sum(t.size for t in planned), planned)


@dataclass(frozen=True)
class Piece:
    """One ranged read of a xorb's blob, and the part ``[lo, hi)`` of each of its chunks that the file needs."""

    term: Term
    start: int
    end: int
    spans: list[tuple[ChunkSpan, int, int]]


def pieces(plan: FilePlan, start: int, end: int) -> Iterator[Piece]:
    """The reads covering bytes ``[start, end)`` of a file: one per term, cut at :data:`READ_BATCH` serialized bytes."""
    pos = 0
    for term in plan.terms:
        batch: list[tuple[ChunkSpan, int, int]] = []
        for chunk in term.chunks:
            chunk_pos, pos = pos, pos + chunk.size
            if pos <= start or chunk_pos >= end:
                continue
            if batch and chunk.byte_end - batch[0][0].byte_start > READ_BATCH:
                yield Piece(term, batch[0][0].byte_start, batch[-1][0].byte_end, batch)
                batch = []
            batch.append((chunk, max(start - chunk_pos, 0), min(end - chunk_pos, chunk.size)))
        if batch:
            yield Piece(term, batch[0][0].byte_start, batch[-1][0].byte_end, batch)
        if pos >= end:
            return


def _read_stored(path: Path, piece: Piece) -> memoryview | None:
    """The file bytes of ``piece`` read by one ``preadv`` straight into their place (no copy after the read), if
    every chunk of it is whole and stored uncompressed: each chunk header lands in a scratch slot and is checked
    after. None if the piece is not of that kind (the general path then reads it)."""
    from openckpt.xet.xorb import CHUNK_HEADER_SIZE, NONE

    spans = piece.spans
    if any((lo, hi) != (0, c.size) or c.byte_end - c.byte_start - CHUNK_HEADER_SIZE != c.size for c, lo, hi in spans):
        return None
    out = bytearray(sum(c.size for c, _, _ in spans))
    headers = bytearray(CHUNK_HEADER_SIZE * len(spans))
    view, heads = memoryview(out), memoryview(headers)
    buffers: list[memoryview] = []
    at = 0
    for i, (chunk, _, _) in enumerate(spans):
        buffers += [heads[i * CHUNK_HEADER_SIZE : (i + 1) * CHUNK_HEADER_SIZE], view[at : at + chunk.size]]
        at += chunk.size
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pos = piece.start
        while buffers:
            n = os.preadv(fd, buffers[:_IOV_MAX], pos)
            if n <= 0:
                raise IntegrityError(f"xorb {piece.term.xorb} is shorter than recorded")
            pos += n
            while buffers and n >= buffers[0].nbytes:
                n -= buffers.pop(0).nbytes
            if n:
                buffers[0] = buffers[0][n:]
    finally:
        os.close(fd)
    for i, (chunk, _, _) in enumerate(spans):
        version, clo, chi, scheme, ulo, uhi = CHUNK_HEADER.unpack_from(heads, i * CHUNK_HEADER_SIZE)
        if (version, scheme, clo | chi << 16, ulo | uhi << 16) != (0, NONE, chunk.size, chunk.size):
            raise IntegrityError(f"stored xorb {piece.term.xorb} is damaged: chunk {chunk.index} has another header")
    return view


def assemble(blobs: BlobStore, piece: Piece, verify: bool) -> bytes | memoryview:
    """The file bytes of ``piece``: one read of the xorb's blob; stored chunks are sliced out of it (one copy, into
    the result), compressed ones decompressed in C. Each chunk header must match the database (a damaged or
    misplaced xorb is an :class:`IntegrityError`, never wrong bytes); with ``verify``, chunk hashes are recomputed
    too (every xorb was fully verified when uploaded, and ``fsck --deep`` re-verifies them at rest)."""
    from openckpt.xet.hashes import chunk_hash, hex_to_hash
    from openckpt.xet.xorb import CHUNK_HEADER_SIZE, NONE, XorbChunk, decode_chunk

    if piece.term.packed:
        return _assemble_packed(blobs, piece, verify)
    local = None if verify else blobs.local_path(piece.term.blob_sha256)
    if local is not None:
        try:
            fast = _read_stored(local, piece)
        except FileNotFoundError:
            fast = None
        if fast is not None:
            return fast
    raw = b"".join(blobs.read(piece.term.blob_sha256, piece.start, piece.end))
    if len(raw) != piece.end - piece.start:
        raise IntegrityError(f"xorb {piece.term.xorb} is shorter than recorded")
    view = memoryview(raw)
    parts: list[bytes | memoryview] = []
    for chunk, lo, hi in piece.spans:
        at = chunk.byte_start - piece.start
        version, clo, chi, scheme, ulo, uhi = CHUNK_HEADER.unpack_from(view, at)
        if (
            version != 0
            or clo | chi << 16 != chunk.byte_end - chunk.byte_start - CHUNK_HEADER_SIZE
            or (ulo | uhi << 16 != chunk.size)
        ):
            raise IntegrityError(f"stored xorb {piece.term.xorb} is damaged: chunk {chunk.index} has another header")
        data: bytes | memoryview
        if scheme == NONE:
            data = view[at + CHUNK_HEADER_SIZE : chunk.byte_end - piece.start]
        else:
            try:
                data = decode_chunk(
                    view,
                    XorbChunk(b"", chunk.byte_start, chunk.byte_end, chunk.size, scheme),
                    offset=piece.start,
                    verify=False,
                )
            except XetFormatError as e:
                raise IntegrityError(f"stored xorb {piece.term.xorb} is damaged: {e}") from None
        if verify and chunk_hash(data) != hex_to_hash(chunk.hash):
            raise IntegrityError(f"stored xorb {piece.term.xorb} is damaged: chunk {chunk.index} has another hash")
        parts.append(data if (lo, hi) == (0, chunk.size) else data[lo:hi])
    return b"".join(parts)


def _assemble_packed(blobs: BlobStore, piece: Piece, verify: bool) -> bytes:
    """The file bytes of ``piece`` from a packed xorb: the frames holding its chunks decoded."""
    from openckpt.hub.services.compression import read_chunks
    from openckpt.xet.hashes import chunk_hash, hex_to_hash

    first, last = piece.spans[0][0].index, piece.spans[-1][0].index + 1
    datas: list[bytes | memoryview]
    if piece.term.bases is not None:  # a delta: its bases XORed back
        from openckpt.hub.services.delta_reads import read_chunks as read_delta

        datas = list(read_delta(blobs, piece.term.blob_sha256, first, last, bases=piece.term.bases, ahead=True))
    else:
        datas = read_chunks(blobs, piece.term.blob_sha256, first, last, ahead=True)
    parts: list[bytes | memoryview] = []
    for (chunk, lo, hi), data in zip(piece.spans, datas, strict=True):
        if len(data) != chunk.size or (verify and chunk_hash(data) != hex_to_hash(chunk.hash)):
            raise IntegrityError(f"stored xorb {piece.term.xorb} is damaged: chunk {chunk.index} has other bytes")
        parts.append(data if (lo, hi) == (0, chunk.size) else data[lo:hi])
    return b"".join(parts)


def read_file(
    blobs: BlobStore, plan: FilePlan, *, start: int = 0, end: int | None = None, verify: bool = False
) -> Iterator[bytes | memoryview]:
    """Bytes ``[start, end)`` of a Xet file, reconstructed from its xorbs in pieces of up to :data:`READ_BATCH`
    bytes, the next :data:`READ_AHEAD` pieces being read while the current one is consumed (memory stays bounded by
    these). ``verify`` recomputes every chunk hash (see :func:`assemble`)."""
    end = plan.size if end is None else min(end, plan.size)
    pending: deque[Future[bytes | memoryview]] = deque()
    try:
        for piece in pieces(plan, start, end):
            pending.append(READERS.submit(assemble, blobs, piece, verify))
            if len(pending) > READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


class XetFileStore:
    """The blob store, plus every verified Xet file readable by its sha256 (reconstructed from xorbs).

    Writes, deletes and local paths are the blob store's; ``blobs`` is the store itself, where xorbs are kept.
    """

    def __init__(self, blobs: BlobStore, db: Database) -> None:
        self.blobs = blobs
        self.db = db

    def _plan(self, sha256: str) -> FilePlan | None:
        with self.db.read() as session:
            found = xet_files(session, [sha256]).get(sha256)
            return None if found is None else file_plan(session, found[0])

    def exists(self, sha256: str) -> bool:
        return self.blobs.exists(sha256) or self._plan(sha256) is not None

    def size(self, sha256: str) -> int | None:
        size = self.blobs.size(sha256)
        if size is None and (plan := self._plan(sha256)) is not None:
            return plan.size
        return size

    def stat(self, sha256: str) -> BlobStat | None:
        return self.blobs.stat(sha256)

    def writer(self, size_hint: int | None = None, *, sha256: str | None = None, hashed: bool = False) -> BlobWriter:
        return self.blobs.writer(size_hint, sha256=sha256, hashed=hashed)

    def local_path(self, sha256: str) -> Path | None:
        return self.blobs.local_path(sha256)

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes | memoryview]:
        if self.blobs.exists(sha256):
            return self._read_blob(sha256, start, end)
        if (plan := self._plan(sha256)) is not None:
            return read_file(self.blobs, plan, start=start, end=end)
        return self.blobs.read(sha256, start, end)

    def _read_blob(self, sha256: str, start: int, end: int | None) -> Iterator[bytes | memoryview]:
        """The whole blob's bytes; from its xorbs if ingestion dropped it just before it was opened."""
        parts = self.blobs.read(sha256, start, end)
        try:
            first = next(parts, None)
        except IntegrityError:
            if self.blobs.exists(sha256) or (plan := self._plan(sha256)) is None:
                raise
            yield from read_file(self.blobs, plan, start=start, end=end)
            return
        if first is not None:
            yield first
        yield from parts

    def delete(self, sha256: str) -> None:
        self.blobs.delete(sha256)

    def keys(self) -> Iterator[str]:
        return self.blobs.keys()

    def sweep(self, older_than: float) -> int:
        return self.blobs.sweep(older_than)


def raw_blobs(store: BlobStore) -> BlobStore:
    """The blob store under ``store`` (where xorbs live), whether or not it is a :class:`XetFileStore`."""
    return store.blobs if isinstance(store, XetFileStore) else store
