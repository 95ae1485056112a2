"""Reading xorbs stored as deltas (``xorbs.encoding`` 3, :mod:`openckpt.xet.delta`): the packed XORed chunks
decoded through the frame cache of :mod:`.compression`, then the bases' bytes XORed back.

A delta's bases are stored whole or packed, never as deltas (``services/deltas.py`` switches a xorb to a delta only
then, and never makes a base a delta), so a read is one level deep: the delta's frames and its bases' chunks.
Where the bases are is read from the database with the plan (:func:`bases_of`); a base packed since is read again.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
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

    def read(self, blobs: BlobStore, src: int, length: int, *, fresh: bool = False) -> list[bytes | memoryview]:
        """Unpacked bytes ``[src, src + length)`` of this xorb, in pieces."""
        if src < 0 or src + length > self.offsets[-1]:
            raise IntegrityError(f"bytes [{src}, {src + length}) are not in base xorb {self.xorb}")
        lo = bisect_right(self.offsets, src) - 1
        hi = bisect_left(self.offsets, src + length)
        datas: Sequence[bytes | memoryview] = (
            compression.read_chunks(blobs, self.key, lo, hi, fresh=fresh, ahead=not fresh)
            if self.packed
            else self._as_uploaded(blobs, lo, hi)
        )
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


def base_reader(
    blobs: BlobStore, table: delta.DeltaTable, bases: Mapping[str, BaseXorb], *, fresh: bool = False
) -> delta.BaseRead:
    """The reader :func:`openckpt.xet.delta.apply` takes, over the bases ``bases`` (which must hold the table's)."""
    try:
        known = [bases[name] for name in table.bases]
    except KeyError as e:
        raise IntegrityError(f"base xorb {e.args[0]} of a delta is not recorded as its base") from None

    def read(base: int, src: int, length: int) -> list[bytes | memoryview]:
        return known[base].read(blobs, src, length, fresh=fresh)

    return read


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


def _served_frame(
    blobs: BlobStore, key: str, start: int, stop: int, bases: Mapping[str, BaseXorb], fresh: bool
) -> bytes:
    pieces: list[bytes | memoryview] = []
    for data in read_chunks(blobs, key, start, stop, bases=bases, fresh=fresh):
        pieces += [packed.served_header(len(data)), data]
    return b"".join(pieces)


def served(
    blobs: BlobStore, key: str, first: int, end: int, *, bases: Mapping[str, BaseXorb], fresh: bool = False
) -> Iterator[bytes | memoryview]:
    """Bytes ``[first, end)`` of the delta object ``key`` (its bases ``bases``: :func:`bases_of`) as served (each
    chunk uncompressed after its Xet header), a frame at a time, the next :data:`compression.SERVE_AHEAD` rebuilt
    while one is sent. Its index is read now (an error before any byte)."""
    spans, offsets = compression.frame_spans(compression.index_of(blobs, key, fresh=fresh), first, end, key=key)
    return compression.decoded_ahead(
        lambda start, stop: _served_frame(blobs, key, start, stop, bases, fresh), spans, offsets, first, end
    )
