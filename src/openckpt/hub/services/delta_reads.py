"""Reading xorbs stored as deltas (``xorbs.encoding`` 3, :mod:`openckpt.xet.delta`): the packed XORed chunks
decoded through the frame cache of :mod:`.compression`, then the bases' bytes XORed back.

A delta's bases are stored whole or packed, never as deltas (``services/deltas.py`` switches a xorb to a delta only
then, and never makes a base a delta), so a read is one level deep: the delta's frames and its bases' chunks.
Where the bases are is read from the database with the plan (:func:`bases_of`); a base packed since is read again.

A xorb range served to a Xet client (:func:`served`) is rebuilt frame by frame on the decoder threads, several
frames at once; the delta's frames and the bases' frames are not aligned, so two neighbouring frames share a base
frame. Each range decodes each base frame it needs once (:class:`_BaseFrames`: kept until the last of its frames
that needs it is rebuilt, not in the shared frame cache, which concurrent ranges would churn), and XORs it into
the delta frame as decoded, in place.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from openckpt.errors import IntegrityError, XetFormatError
from openckpt.hub.db.models import Xorb, XorbChunk, XorbDeltaBase
from openckpt.hub.services import compression
from openckpt.store.blobs import BlobStore
from openckpt.xet import delta, packed
from openckpt.xet.xorb import XorbChunk as ParsedChunk
from openckpt.xet.xorb import decode_chunk

__all__ = ["DELTA", "BaseXorb", "base_reader", "bases_of", "load_base", "read_chunks", "served", "table_of"]

DELTA = 3
"""``xorbs.encoding`` of a xorb stored as a delta."""
_TABLES: OrderedDict[str, tuple[delta.DeltaTable, list[int]]] = OrderedDict()
_TABLE_CACHE = 256
_lock = threading.Lock()


@dataclass(frozen=True)
class BaseXorb:
    """A base as read: its object and encoding, each chunk's byte range in the object, and each chunk's unpacked
    offset (and the end)."""

    xorb: str
    key: str
    packed: bool
    spans: list[tuple[int, int]]
    offsets: list[int]

    def _as_uploaded(self, blobs: BlobStore, lo: int, hi: int) -> list[bytes | memoryview]:
        start, end = self.spans[lo][0], self.spans[hi - 1][1]
        data = memoryview(b"".join(blobs.read(self.key, start, end)))
        if len(data) != end - start:
            raise IntegrityError(f"base xorb {self.xorb} is shorter than recorded")
        out: list[bytes | memoryview] = []
        for i in range(lo, hi):
            size = self.offsets[i + 1] - self.offsets[i]
            chunk = ParsedChunk(b"", self.spans[i][0], self.spans[i][1], size, 0)
            try:
                out.append(decode_chunk(data, chunk, offset=start, verify=False))
            except XetFormatError as e:
                raise IntegrityError(f"base xorb {self.xorb} is damaged: {e}") from None
        return out

    def chunks_of(self, src: int, length: int) -> tuple[int, int]:
        """The chunks ``[lo, hi)`` holding unpacked bytes ``[src, src + length)`` of this xorb."""
        if src < 0 or src + length > self.offsets[-1]:
            raise IntegrityError(f"bytes [{src}, {src + length}) are not in base xorb {self.xorb}")
        return bisect_right(self.offsets, src) - 1, bisect_left(self.offsets, src + length)

    def read(
        self, blobs: BlobStore, src: int, length: int, *, fresh: bool = False, frames: _BaseFrames | None = None
    ) -> list[bytes | memoryview]:
        """Unpacked bytes ``[src, src + length)`` of this xorb, in pieces (a packed one's frames from ``frames``, if
        given; else from the shared cache, the next one decoded ahead)."""
        lo, hi = self.chunks_of(src, length)
        datas: Sequence[bytes | memoryview]
        if not self.packed:
            datas = self._as_uploaded(blobs, lo, hi)
        elif frames is not None:
            datas = frames.read_chunks(self.key, lo, hi)
        else:
            datas = compression.read_chunks(blobs, self.key, lo, hi, fresh=fresh, ahead=not fresh)
        out: list[bytes | memoryview] = []
        at, end = src - self.offsets[lo], src - self.offsets[lo] + length
        pos = 0
        for data in datas:  # the pieces of the chunks that fall in [src, src + length)
            a, b = max(at - pos, 0), min(end - pos, len(data))
            if a < b:
                out.append(memoryview(data)[a:b])
            pos += len(data)
        return out


def load_base(session: Session, xorb: str) -> BaseXorb | None:
    """The xorb ``xorb`` as a base, if it is stored and not a delta."""
    row = session.get(Xorb, xorb)
    if row is None or row.encoding == DELTA:
        return None
    rows = session.execute(
        select(XorbChunk.unpacked_size, XorbChunk.byte_start, XorbChunk.byte_end)
        .where(XorbChunk.xorb_hash == xorb)
        .order_by(XorbChunk.chunk_index)
    ).tuples()
    spans: list[tuple[int, int]] = []
    offsets = [0]
    for size, start, end in rows:
        spans.append((start, end))
        offsets.append(offsets[-1] + size)
    return BaseXorb(xorb, row.blob_sha256, row.encoding == compression.PACKED, spans, offsets)


def bases_of(session: Session, xorbs: Iterable[str]) -> dict[str, dict[str, BaseXorb]]:
    """Per delta xorb among ``xorbs``, its bases as stored now (:class:`IntegrityError` if one is missing or is a
    delta: the database forbids both)."""
    found: dict[str, dict[str, BaseXorb]] = {}
    loaded: dict[str, BaseXorb] = {}
    wanted = list(xorbs)
    for xorb, base in session.execute(
        select(XorbDeltaBase.xorb_hash, XorbDeltaBase.base_xorb).where(XorbDeltaBase.xorb_hash.in_(wanted))
    ).tuples():
        if base not in loaded:
            got = load_base(session, base)
            if got is None:
                raise IntegrityError(f"delta xorb {xorb} names base {base}, which is not stored whole or packed")
            loaded[base] = got
        found.setdefault(xorb, {})[base] = loaded[base]
    for xorb in wanted:
        found.setdefault(xorb, {})
    return found


def table_of(blobs: BlobStore, key: str, *, fresh: bool = False) -> tuple[delta.DeltaTable, list[int]]:
    """The delta table of the object ``key`` and its xorb's chunk offsets, unpacked (cached: objects are named by
    their content)."""
    with _lock:
        found = None if fresh else _TABLES.get(key)
        if found is not None:
            _TABLES.move_to_end(key)
            return found
    index = compression.index_of(blobs, key, fresh=fresh)
    offsets = [0]
    for size in index.sizes:
        offsets.append(offsets[-1] + size)
    end = delta.stored_size(index)
    stored = blobs.size(key)
    if stored is None:
        raise IntegrityError(f"delta object {key} is missing")
    try:
        at, length = delta.table_span(b"".join(blobs.read(key, stored - 16, stored)), stored)
        if at != end:
            raise XetFormatError("the delta table does not follow the packed frames")
        table = delta.parse_table(b"".join(blobs.read(key, at, at + length)), offsets[-1])
    except XetFormatError as e:
        raise IntegrityError(f"delta object {key} is damaged: {e}") from None
    with _lock:
        _TABLES[key] = (table, offsets)
        while len(_TABLES) > _TABLE_CACHE:
            _TABLES.popitem(last=False)
    return table, offsets


def _known(table: delta.DeltaTable, bases: Mapping[str, BaseXorb]) -> list[BaseXorb]:
    try:
        return [bases[name] for name in table.bases]
    except KeyError as e:
        raise IntegrityError(f"base xorb {e.args[0]} of a delta is not recorded as its base") from None


def base_reader(
    blobs: BlobStore,
    table: delta.DeltaTable,
    bases: Mapping[str, BaseXorb],
    *,
    fresh: bool = False,
    frames: _BaseFrames | None = None,
) -> delta.BaseRead:
    """The reader :func:`openckpt.xet.delta.apply` takes, over the bases ``bases`` (which must hold the table's)."""
    known = _known(table, bases)

    def read(base: int, src: int, length: int) -> list[bytes | memoryview]:
        return known[base].read(blobs, src, length, fresh=fresh, frames=frames)

    return read


class _BaseFrames:
    """The frames of packed bases that one served range reads, each decoded once (by whichever of the range's
    frames asks first; the others wait for it) and dropped once every frame of the range needing it is rebuilt
    (:meth:`expect` counts them; a frame not counted is decoded all the same, and kept until the range ends)."""

    def __init__(self, blobs: BlobStore, *, fresh: bool) -> None:
        self._blobs, self._fresh = blobs, fresh
        self._left: Counter[tuple[str, int]] = Counter()
        self._decoded: dict[tuple[str, int], Future[bytes | bytearray]] = {}
        self._indexes: dict[str, packed.PackedIndex] = {}
        self._lock = threading.Lock()

    def _index(self, key: str) -> packed.PackedIndex:
        found = self._indexes.get(key)
        if found is None:
            found = self._indexes[key] = compression.index_of(self._blobs, key, fresh=self._fresh)
        return found

    def needed(self, table: delta.DeltaTable, known: Sequence[BaseXorb], start: int, end: int) -> set[tuple[str, int]]:
        """The ``(object, frame)`` pairs of packed bases that the unpacked bytes ``[start, end)`` of a delta read."""
        need: set[tuple[str, int]] = set()
        for dst, src, length, base in table.overlapping(start, end).tolist():
            found = known[base]
            if found.packed:
                lo, hi = max(dst, start), min(dst + length, end)
                first, last = found.chunks_of(src + lo - dst, hi - lo)
                need.update((found.key, f) for f in self._index(found.key).frames_for(first, last))
        return need

    def expect(self, needs: Iterable[Iterable[tuple[str, int]]]) -> None:
        """Count, for each frame of the range, the base frames it will read."""
        self._left.update(pair for need in needs for pair in need)

    def _frame(self, key: str, frame: int) -> bytes | bytearray:
        with self._lock:
            running = self._decoded.get((key, frame))
            mine = running is None
            if running is None:
                running = self._decoded[(key, frame)] = Future()
        if not mine:
            return running.result()
        try:
            data = compression.decoded_frame(self._blobs, key, self._index(key), frame, fresh=self._fresh, keep=False)
        except BaseException as e:
            running.set_exception(e)
            raise
        running.set_result(data)
        return data

    def read_chunks(self, key: str, lo: int, hi: int) -> list[bytes | memoryview]:
        """The unpacked bytes of chunks ``[lo, hi)`` of the packed base object ``key``."""
        try:
            return packed.read_chunks(self._index(key), _no_read, lo, hi, frames=lambda f: self._frame(key, f))
        except XetFormatError as e:
            raise IntegrityError(f"packed xorb object {key} is damaged: {e}") from None

    def done(self, need: Iterable[tuple[str, int]]) -> None:
        """A frame of the range that read ``need`` is rebuilt: drop what no later frame reads."""
        with self._lock:
            for pair in need:
                self._left[pair] -= 1
                if self._left[pair] <= 0:
                    self._decoded.pop(pair, None)


def _no_read(offset: int, length: int) -> bytes:
    raise AssertionError("base frames are decoded by _BaseFrames")


def read_chunks(
    blobs: BlobStore,
    key: str,
    start: int,
    end: int,
    *,
    bases: Mapping[str, BaseXorb],
    fresh: bool = False,
    ahead: bool = False,
) -> list[memoryview]:
    """The unpacked bytes of chunks ``[start, end)`` of the delta object ``key`` whose bases are ``bases``: its
    packed frames decoded (``ahead``: the next one meanwhile), the bases XORed back."""
    table, offsets = table_of(blobs, key, fresh=fresh)
    parts = compression.read_chunks(blobs, key, start, end, fresh=fresh, ahead=ahead)
    out = bytearray().join(parts)  # one copy, writable
    try:
        delta.apply(out, offsets[start], table, base_reader(blobs, table, bases, fresh=fresh))
    except XetFormatError as e:
        raise IntegrityError(f"delta object {key} does not rebuild: {e}") from None
    view = memoryview(out)
    return [view[offsets[i] - offsets[start] : offsets[i + 1] - offsets[start]] for i in range(start, end)]


def served(
    blobs: BlobStore, key: str, first: int, end: int, *, bases: Mapping[str, BaseXorb], fresh: bool = False
) -> Iterator[bytes | memoryview]:
    """Bytes ``[first, end)`` of the delta object ``key`` (its bases ``bases``: :func:`bases_of`) as served (each
    chunk uncompressed after its Xet header), a frame at a time, the next :data:`compression.SERVE_AHEAD` rebuilt
    while one is sent; each base frame decoded once. Its index and table are read now (an error before any byte)."""
    index = compression.index_of(blobs, key, fresh=fresh)
    spans, served_at = compression.frame_spans(index, first, end, key=key)
    table, offsets = table_of(blobs, key, fresh=fresh)
    known = _known(table, bases)
    frames = _BaseFrames(blobs, fresh=fresh)
    needs = {start: frames.needed(table, known, offsets[start], offsets[stop]) for start, stop in spans}
    frames.expect(needs.values())
    read = base_reader(blobs, table, bases, frames=frames)

    def rebuild(start: int, stop: int) -> bytes:
        try:
            return _served_frame(blobs, key, index, start, stop, offsets=offsets, table=table, read=read)
        finally:
            frames.done(needs[start])

    return compression.decoded_ahead(rebuild, spans, served_at, first, end)


def _served_frame(
    blobs: BlobStore,
    key: str,
    index: packed.PackedIndex,
    start: int,
    stop: int,
    *,
    offsets: list[int],
    table: delta.DeltaTable,
    read: delta.BaseRead,
) -> bytes:
    """Chunks ``[start, stop)`` (of one frame) of the delta object ``key`` as served: the frame decoded into a buffer
    of its own, the bases XORed into it in place, each chunk then after its header."""
    (frame,) = index.frames_for(start, stop)
    try:
        data = compression.decoded_frame(blobs, key, index, frame, fresh=True)  # a buffer of its own
    except XetFormatError as e:
        raise IntegrityError(f"packed xorb object {key} is damaged: {e}") from None
    writable = data if isinstance(data, bytearray) else bytearray(data)
    at = offsets[index.firsts[frame]]  # the frame's first byte in the xorb's unpacked bytes
    view = memoryview(writable)[offsets[start] - at : offsets[stop] - at]
    try:
        delta.apply(view, offsets[start], table, read)
    except XetFormatError as e:
        raise IntegrityError(f"delta object {key} does not rebuild: {e}") from None
    pieces: list[bytes | memoryview] = []
    for i in range(start, stop):
        pieces += [
            packed.served_header(offsets[i + 1] - offsets[i]),
            view[offsets[i] - offsets[start] : offsets[i + 1] - offsets[start]],
        ]
    return b"".join(pieces)
