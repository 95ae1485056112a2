"""Compression at rest: each xorb's chunks re-coded in the background into the smallest lossless packing measured
(float tensors as byte planes Huffman-coded by huff0, ZipNN's method; zstd for the rest; raw when nothing helps;
:mod:`openckpt.xet.packed`).

A job reads a xorb as uploaded, packs it, decodes the packing back and compares it byte for byte, writes it as a new
store object (temp → fsync → rename by the store's writer) and then switches the ``xorbs`` row to it in one
transaction, only if the row still names the object it read. A SIGKILL at any point leaves either the old row (the
new object is unnamed: GC frees it) or the new one (the old object is unnamed: GC frees it). Packed xorbs are
served uncompressed (Xet scheme 0): the row's ``serialized_size`` and chunk byte ranges are then that layout's.
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Select, Table, bindparam, select, update

from openckpt.errors import IntegrityError, XetFormatError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import XetSha256, XetTerm, Xorb, XorbChunk
from openckpt.store.blobs import BlobStore
from openckpt.xet import packed
from openckpt.xet.xorb import XorbChunk as ParsedChunk
from openckpt.xet.xorb import decode_chunk

__all__ = [
    "AS_UPLOADED",
    "KEPT",
    "PACKED",
    "CompressReport",
    "compress",
    "compress_later",
    "decoded_ahead",
    "decoded_frame",
    "frame_spans",
    "read_chunks",
    "served",
    "xorbs_holding",
]

log = logging.getLogger("openckpt.hub.compression")
AS_UPLOADED = 0
PACKED = 1
KEPT = 2
MIN_SAVING = 0.02
"""A packing must save this share of the object's bytes to replace it."""
_INDEXES: OrderedDict[str, packed.PackedIndex] = OrderedDict()
_INDEX_CACHE = 512
_lock = threading.Lock()
FRAME_CACHE = 8
"""Decoded frames kept in memory (about 4 MiB each)."""
_FRAMES: OrderedDict[tuple[str, int], bytes | bytearray] = OrderedDict()
_DECODING: dict[tuple[str, int], Future[bytes | bytearray]] = {}
SERVE_AHEAD = 2
"""Frames of a packed xorb decoded ahead of the one being sent."""
_DECODERS = ThreadPoolExecutor(4, thread_name_prefix="openckpt-unpack")
"""The threads that decode frames ahead of a reader (delta reads share them: :mod:`.delta_reads`)."""


@dataclass
class CompressReport:
    packed: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Xorb → (bytes before, bytes after)."""
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _read(blobs: BlobStore, key: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the store object ``key``: one ``pread`` where the store is a local directory."""
    local = blobs.local_path(key)
    if local is not None:
        try:
            with open(local, "rb") as f:
                data = os.pread(f.fileno(), end - start, start)
        except FileNotFoundError:
            data = b""
    else:
        data = b"".join(blobs.read(key, start, end))
    if len(data) != end - start:
        raise IntegrityError(f"store object {key} is shorter than recorded")
    return data


def index_of(blobs: BlobStore, key: str, *, fresh: bool = False) -> packed.PackedIndex:
    """The index of the packed object ``key`` (cached: objects are named by their content; ``fresh`` reads it
    again)."""
    with _lock:
        found = None if fresh else _INDEXES.get(key)
        if found is not None:
            _INDEXES.move_to_end(key)
            return found
    prefix = _read(blobs, key, 0, 16)
    index = packed.parse_index(_read(blobs, key, 0, packed.head_length(prefix)))
    with _lock:
        _INDEXES[key] = index
        while len(_INDEXES) > _INDEX_CACHE:
            _INDEXES.popitem(last=False)
    return index


def decoded_frame(
    blobs: BlobStore, key: str, index: packed.PackedIndex, frame: int, fresh: bool, *, keep: bool = True
) -> bytes | bytearray:
    """Frame ``frame`` of ``key`` decoded; the last :data:`FRAME_CACHE` decoded are kept (reads of a file cut their
    pieces elsewhere than frames end, so neighbouring pieces share a frame; ``keep=False``: a reader that keeps its
    own does not evict them), and a frame another thread is decoding is waited for rather than decoded twice.
    ``fresh``: read from the store and decoded into a buffer of its own, whatever the cache holds."""
    if fresh:
        return packed.decode(index, lambda at, n: _read(blobs, key, at, at + n), frame)
    with _lock:
        found = _FRAMES.get((key, frame))
        if found is not None:
            _FRAMES.move_to_end((key, frame))
            return found
        running = _DECODING.get((key, frame))
        mine = running is None
        if running is None:
            running = _DECODING[(key, frame)] = Future()
    if not mine:
        return running.result()
    try:
        data = packed.decode(index, lambda at, n: _read(blobs, key, at, at + n), frame)
    except BaseException as e:
        with _lock:
            del _DECODING[(key, frame)]
        running.set_exception(e)
        raise
    with _lock:
        if keep:
            _FRAMES[(key, frame)] = data
        while len(_FRAMES) > FRAME_CACHE:
            _FRAMES.popitem(last=False)
        del _DECODING[(key, frame)]
    running.set_result(data)
    return data


def read_chunks(
    blobs: BlobStore, key: str, start: int, end: int, *, fresh: bool = False, ahead: bool = False
) -> list[bytes | memoryview]:
    """The unpacked bytes of chunks ``[start, end)`` of the packed object ``key`` (``fresh``: read from the store,
    never from the caches, as ``fsck --deep`` must). With ``ahead`` (a reader going through the file), the frame
    after the last one read is decoded on another thread meanwhile, so that two cores decode."""
    index = index_of(blobs, key, fresh=fresh)
    if ahead and not fresh:
        following = index.frames_for(start, end)[-1] + 1
        if following < len(index.firsts):
            _DECODERS.submit(decoded_frame, blobs, key, index, following, False)  # an error is the reader's to meet
    try:
        return packed.read_chunks(
            index, _no_read, start, end, frames=lambda f: decoded_frame(blobs, key, index, f, fresh)
        )
    except XetFormatError as e:
        raise IntegrityError(f"packed xorb object {key} is damaged: {e}") from None


def _no_read(offset: int, length: int) -> bytes:
    raise AssertionError("frames are read by decoded_frame")


def whole_chunks(blobs: BlobStore, key: str, first: int, end: int) -> bool:
    """Whether bytes ``[first, end)`` of a packed xorb as served are whole chunks: a span that is not was planned on
    the xorb's layout before it was packed."""
    offsets = packed.served_offsets(index_of(blobs, key).sizes)
    lo, hi = bisect_left(offsets, first), bisect_left(offsets, end)
    return lo < hi < len(offsets) and offsets[lo] == first and offsets[hi] == end


def _served_frame(blobs: BlobStore, key: str, start: int, stop: int, fresh: bool) -> bytes:
    parts: list[bytes | memoryview] = []
    for data in read_chunks(blobs, key, start, stop, fresh=fresh):
        parts += [packed.served_header(len(data)), data]
    return b"".join(parts)


def served(blobs: BlobStore, key: str, first: int, end: int, *, fresh: bool = False) -> Iterator[bytes | memoryview]:
    """Bytes ``[first, end)`` of a packed xorb as served (each chunk uncompressed after its Xet header): one piece
    per frame, each frame decoded once, the next :data:`SERVE_AHEAD` decoded while one is sent. Its index is read
    now (an error before any byte)."""
    spans, offsets = frame_spans(index_of(blobs, key, fresh=fresh), first, end, key=key)
    return decoded_ahead(lambda start, stop: _served_frame(blobs, key, start, stop, fresh), spans, offsets, first, end)


def frame_spans(
    index: packed.PackedIndex, first: int, end: int, *, key: str
) -> tuple[list[tuple[int, int]], list[int]]:
    """The chunk ranges, one per frame, that hold the served bytes ``[first, end)`` of the packed object ``key``, and
    every chunk's served offset."""
    offsets = packed.served_offsets(index.sizes)
    lo = bisect_right(offsets, first) - 1
    hi = bisect_left(offsets, end)
    if not 0 <= lo < hi <= len(index.sizes):
        raise IntegrityError(f"bytes [{first}, {end}) are not in xorb object {key}")
    return [(max(index.firsts[f], lo), min(index.chunk_end(f), hi)) for f in index.frames_for(lo, hi)], offsets


def decoded_ahead(
    decode: Callable[[int, int], bytes], spans: list[tuple[int, int]], offsets: list[int], first: int, end: int
) -> Iterator[memoryview]:
    """The served bytes ``[first, end)`` of the frames ``spans``, each made by ``decode(start, stop)`` on the
    decoder threads, the next :data:`SERVE_AHEAD` while one is sent; what is still pending when the reader stops
    is cancelled."""
    pending: deque[tuple[int, Future[bytes]]] = deque()
    try:
        for start, stop in spans:
            pending.append((start, _DECODERS.submit(decode, start, stop)))
            if len(pending) > SERVE_AHEAD:
                yield _cut(pending.popleft(), offsets, first, end)
        while pending:
            yield _cut(pending.popleft(), offsets, first, end)
    finally:
        for _, future in pending:
            future.cancel()


def _cut(job: tuple[int, Future[bytes]], offsets: list[int], first: int, end: int) -> memoryview:
    start, future = job
    body = memoryview(future.result())
    at = offsets[start]
    return body[max(first - at, 0) : min(end - at, len(body))]


def _chunks_as_uploaded(blobs: BlobStore, row: Xorb, spans: list[tuple[str, int, int, int]]) -> list[bytes]:
    from openckpt.xet.hashes import hex_to_hash

    data = _read(blobs, row.blob_sha256, 0, row.serialized_size)
    return [
        decode_chunk(data, ParsedChunk(hex_to_hash(h), start, end, size, 0), verify=True)
        for h, size, start, end in spans
    ]


def compress_xorb(db: Database, blobs: BlobStore, xorb: str, report: CompressReport) -> None:
    """Pack one xorb as uploaded, if that saves :data:`MIN_SAVING`; verified before its row switches."""
    with db.read() as session:
        row = session.get(Xorb, xorb)
        if row is None or row.encoding != AS_UPLOADED:
            return
        session.expunge(row)
        spans = list(
            session.execute(
                select(XorbChunk.chunk_hash, XorbChunk.unpacked_size, XorbChunk.byte_start, XorbChunk.byte_end)
                .where(XorbChunk.xorb_hash == xorb)
                .order_by(XorbChunk.chunk_index)
            ).tuples()
        )
    old = row.blob_sha256
    chunks = _chunks_as_uploaded(blobs, row, spans)
    body = packed.pack(chunks)
    if len(body) > row.serialized_size * (1 - MIN_SAVING):
        with db.write() as session:
            session.execute(update(Xorb).where(Xorb.hash == xorb, Xorb.blob_sha256 == old).values(encoding=KEPT))
        report.kept.append(xorb)
        return
    check = packed.read_chunks(packed.parse_index(body), lambda at, n: body[at : at + n], 0, len(chunks))
    if any(bytes(a) != b for a, b in zip(check, chunks, strict=True)):
        raise IntegrityError(f"packing of xorb {xorb} does not decode to its chunks")
    writer = blobs.writer(len(body))
    try:
        writer.write(body)
    except BaseException:
        writer.abort()
        raise
    key = writer.commit(expected_size=len(body))
    offsets = packed.served_offsets([len(c) for c in chunks])
    with db.write() as session:
        result = session.execute(
            update(Xorb)
            .where(Xorb.hash == xorb, Xorb.blob_sha256 == old, Xorb.encoding == AS_UPLOADED)
            .values(blob_sha256=key, encoding=PACKED, stored_size=len(body), serialized_size=offsets[-1])
        )
        switched = cast(CursorResult[Any], result).rowcount
        if switched:
            chunk_rows = cast(Table, XorbChunk.__table__)
            session.connection().execute(
                update(chunk_rows)
                .where(chunk_rows.c.xorb_hash == bindparam("x"), chunk_rows.c.chunk_index == bindparam("i"))
                .values(byte_start=bindparam("s"), byte_end=bindparam("e")),
                [{"x": xorb, "i": i, "s": offsets[i], "e": offsets[i + 1]} for i in range(len(chunks))],
            )
    if switched:
        report.packed[xorb] = (row.serialized_size, len(body))


def xorbs_of(db: Database, sha256s: Iterable[str] | None) -> list[str]:
    """Xorbs as uploaded (all, or those holding the verified Xet files of ``sha256s``)."""
    with db.read() as session:
        stmt = select(Xorb.hash).where(Xorb.encoding == AS_UPLOADED)
        if sha256s is not None:
            stmt = stmt.where(Xorb.hash.in_(xorbs_holding(sha256s)))
        return list(session.scalars(stmt.order_by(Xorb.hash)))


def xorbs_holding(sha256s: Iterable[str]) -> Select[str]:
    """The hashes of the xorbs that hold terms of the Xet files of ``sha256s`` (a subquery)."""
    files = select(XetSha256.file_hash).where(XetSha256.sha256.in_(list(sha256s)))
    return select(XetTerm.xorb_hash).where(XetTerm.file_hash.in_(files))


def compress(db: Database, blobs: BlobStore, *, sha256s: Iterable[str] | None = None) -> CompressReport:
    """Pack every xorb as uploaded (or those of the files ``sha256s``); blocking. A xorb that fails stays as it
    was."""
    report = CompressReport()
    for xorb in xorbs_of(db, sha256s):
        try:
            compress_xorb(db, blobs, xorb, report)
        except Exception as e:  # the xorb stays as uploaded: nothing is lost
            log.warning("packing xorb %s failed: %s", xorb, e)
            report.failed[xorb] = str(e)
    return report


_BACKGROUND = ThreadPoolExecutor(1, thread_name_prefix="openckpt-compress")


def compress_later(
    db: Database, blobs: BlobStore, *, sha256s: Iterable[str], after: Future[Any] | None = None
) -> Future[CompressReport]:
    """:func:`compress` the xorbs of the files ``sha256s`` in this process's background thread, once ``after`` (an
    ingestion job of the same files) is done."""
    wanted = list(sha256s)

    def run() -> CompressReport:
        if after is not None:
            after.exception()  # waits; a failed ingestion leaves whole blobs, whose files have no xorbs to pack
        return compress(db, blobs, sha256s=wanted)

    return _BACKGROUND.submit(run)
