"""Delta objects: a xorb's chunks stored as XOR against bytes of other xorbs (its bases), then packed.

A fine-tune keeps most of its base's bits: XORed with the base's bytes at the same tensor offsets, the sign and
exponent byte of most elements becomes zero, and the planes of :mod:`.floatcodec` code that to almost nothing.

Layout: the packed object (:mod:`.packed`) of the XORed chunks, then the delta table: base count and segment count
(u32 each), each base xorb's hash (32 bytes), the segments (:data:`SEGMENT`: where in the xorb's unpacked bytes,
where in its base's unpacked bytes, how many bytes, which base), then the table's offset (u64) and ``OCKDELT1``.
The packed part is read as any packed object (its head is at offset 0 and names its frames' offsets), so the hub's
frame cache and decode-ahead serve deltas as they serve packed xorbs; decoding then XORs the same base bytes back.
Bytes no segment covers are stored as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from openckpt.errors import XetFormatError
from openckpt.xet import packed
from openckpt.xet.hashes import hash_to_hex, hex_to_hash

__all__ = ["MAGIC", "SEGMENT", "DeltaTable", "apply", "encode", "parse_table", "table_span"]

MAGIC = b"OCKDELT1"
SEGMENT = np.dtype([("dst", "<u8"), ("src", "<u8"), ("length", "<u4"), ("base", "<u4")])
"""A run of a xorb's unpacked bytes (from ``dst``) XORed with a base's unpacked bytes (from ``src``)."""
_COUNTS = struct.Struct("<II")
_TRAILER = struct.Struct("<Q8s")
MAX_SEGMENTS = 1 << 22

BaseRead = Callable[[int, int, int], Sequence[bytes | bytearray | memoryview]]
"""``read(base, src, length)``: ``length`` unpacked bytes of base ``base`` from ``src``, in pieces."""


@dataclass(frozen=True)
class DeltaTable:
    """The bases of a delta object (xorb hashes, hex) and its segments, sorted by ``dst`` and disjoint."""

    bases: tuple[str, ...]
    segments: np.ndarray[Any, Any]

    def overlapping(self, start: int, end: int) -> np.ndarray[Any, Any]:
        """The segments that cover any byte of ``[start, end)``."""
        dst = self.segments["dst"]
        ends = dst + self.segments["length"]
        lo = int(np.searchsorted(ends, start, side="right"))
        hi = int(np.searchsorted(dst, end, side="left"))
        return self.segments[lo:hi]

    def to_bytes(self) -> bytes:
        return (
            _COUNTS.pack(len(self.bases), len(self.segments))
            + b"".join(hex_to_hash(b) for b in self.bases)
            + self.segments.astype(SEGMENT, copy=False).tobytes()
        )


def checked(bases: Sequence[str], segments: np.ndarray[Any, Any], size: int) -> DeltaTable:
    """A table of ``segments`` over a xorb of ``size`` unpacked bytes, checked (sorted, disjoint, inside, bases
    named)."""
    segments = np.ascontiguousarray(segments, dtype=SEGMENT)
    dst, length = segments["dst"].astype(np.int64), segments["length"].astype(np.int64)
    if len(segments) > MAX_SEGMENTS or (length <= 0).any() or (segments["base"] >= len(bases)).any():
        raise XetFormatError("delta table has impossible segments")
    if len(segments) and ((dst[1:] < dst[:-1] + length[:-1]).any() or int(dst[-1] + length[-1]) > size):
        raise XetFormatError("delta table's segments overlap or leave the xorb")
    return DeltaTable(tuple(bases), segments)


def apply(out: bytearray | memoryview, start: int, table: DeltaTable, read: BaseRead) -> None:
    """XOR into ``out`` (a xorb's unpacked bytes from ``start``) the base bytes every segment over it names: turns
    a xorb's bytes into its delta, and back."""
    view = np.frombuffer(out, np.uint8)
    end = start + len(view)
    for dst, src, length, base in table.overlapping(start, end).tolist():
        lo, hi = max(dst, start), min(dst + length, end)
        at = lo - start
        for piece in read(base, src + lo - dst, hi - lo):
            n = len(piece)
            target = view[at : at + n]
            np.bitwise_xor(target, np.frombuffer(piece, np.uint8), out=target)
            at += n
        if at != hi - start:
            raise XetFormatError(f"base {table.bases[base]} gave {at - (lo - start)} bytes for {hi - lo}")


def encode(chunks: Sequence[bytes | memoryview], table: DeltaTable, read: BaseRead) -> bytes:
    """The delta object of a xorb's chunks (unpacked) against ``table``'s bases."""
    stream = bytearray(b"".join(chunks))
    apply(stream, 0, table, read)
    view = memoryview(stream)
    xored: list[memoryview] = []
    at = 0
    for chunk in chunks:
        xored.append(view[at : at + len(chunk)])
        at += len(chunk)
    body = packed.pack(xored)
    return body + table.to_bytes() + _TRAILER.pack(len(body), MAGIC)


def table_span(trailer: bytes | memoryview, size: int) -> tuple[int, int]:
    """``(offset, length)`` of the table of a delta object of ``size`` bytes, from its last 16 bytes."""
    if len(trailer) != _TRAILER.size:
        raise XetFormatError("truncated delta object")
    offset, magic = _TRAILER.unpack(trailer)
    if magic != MAGIC or not 0 < offset <= size - _TRAILER.size:
        raise XetFormatError("not a delta object")
    return offset, size - _TRAILER.size - offset


def parse_table(data: bytes | memoryview, size: int) -> DeltaTable:
    """The table of a delta object from its bytes (:func:`table_span`) over a xorb of ``size`` unpacked bytes."""
    if len(data) < _COUNTS.size:
        raise XetFormatError("truncated delta table")
    bases, count = _COUNTS.unpack_from(data, 0)
    at = _COUNTS.size + 32 * bases
    if count > MAX_SEGMENTS or len(data) != at + count * SEGMENT.itemsize:
        raise XetFormatError("delta table does not match its counts")
    names = [hash_to_hex(bytes(data[_COUNTS.size + 32 * i : _COUNTS.size + 32 * (i + 1)])) for i in range(bases)]
    return checked(names, np.frombuffer(data, SEGMENT, count=count, offset=at), size)


def stored_size(index: packed.PackedIndex) -> int:
    """Bytes of the packed part of an object whose head is ``index`` (where a delta's table starts)."""
    offset, length = index.spans[-1]
    return offset + length
