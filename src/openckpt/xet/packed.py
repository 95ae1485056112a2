"""Packed xorbs: a xorb's chunks as the store keeps them at rest, in frames coded by :mod:`.floatcodec`.

Layout: ``OCKPACK1``, the chunk count and frame count (u32 each), each chunk's unpacked size (u32), each
frame's first chunk (u32), byte offset in the object (u64), length (u32) and CRC-32 (u32), then the frames. A
frame holds whole consecutive chunks, about :data:`FRAME_SIZE` bytes of them, so a range of chunks is read by
decoding only the frames that hold it. Clients never see this layout: the hub serves a packed xorb's chunks
uncompressed (Xet scheme 0), at the byte offsets :func:`served_offsets` gives.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from openckpt.errors import XetFormatError
from openckpt.xet import floatcodec
from openckpt.xet.xorb import CHUNK_HEADER_SIZE, NONE

__all__ = ["FRAME_SIZE", "MAGIC", "PackedIndex", "decode", "pack", "parse_index", "read_chunks", "served_offsets"]

MAGIC = b"OCKPACK1"
FRAME_SIZE = 4 << 20
"""Unpacked bytes per frame: large enough for ZipNN and zstd to reach their ratio, small enough for a ranged read."""
_COUNTS = struct.Struct("<II")
_FRAME = struct.Struct("<IQII")  # first chunk, offset, length, crc32 of the coded frame
_HEADER = struct.Struct("<BHBBHB")
_CODERS = ThreadPoolExecutor(2, thread_name_prefix="openckpt-pack")


@dataclass(frozen=True)
class PackedIndex:
    """The head of a packed xorb: chunk sizes, and per frame its first chunk and ``(offset, length)``."""

    sizes: tuple[int, ...]
    firsts: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    crcs: tuple[int, ...] = ()

    @property
    def head_size(self) -> int:
        return len(MAGIC) + _COUNTS.size + 4 * len(self.sizes) + _FRAME.size * len(self.firsts)

    def frames_for(self, start: int, end: int) -> range:
        """Frames holding chunks ``[start, end)``."""
        first = max(i for i, f in enumerate(self.firsts) if f <= start)
        last = max(i for i, f in enumerate(self.firsts) if f < end)
        return range(first, last + 1)

    def chunk_end(self, frame: int) -> int:
        return self.firsts[frame + 1] if frame + 1 < len(self.firsts) else len(self.sizes)


def head_length(prefix: bytes | memoryview) -> int:
    """Bytes of the head of a packed xorb whose first 16 bytes are ``prefix``."""
    if bytes(prefix[: len(MAGIC)]) != MAGIC:
        raise XetFormatError("not a packed xorb")
    chunks, frames = _COUNTS.unpack_from(prefix, len(MAGIC))
    return len(MAGIC) + _COUNTS.size + 4 * int(chunks) + _FRAME.size * int(frames)


def parse_index(head: bytes | memoryview) -> PackedIndex:
    """The index of a packed xorb from its head (at least :func:`head_length` bytes)."""
    length = head_length(head)
    if len(head) < length:
        raise XetFormatError("truncated packed xorb head")
    chunks, frames = _COUNTS.unpack_from(head, len(MAGIC))
    at = len(MAGIC) + _COUNTS.size
    sizes = struct.unpack_from(f"<{chunks}I", head, at)
    at += 4 * chunks
    entries = [_FRAME.unpack_from(head, at + i * _FRAME.size) for i in range(frames)]
    index = PackedIndex(
        tuple(sizes), tuple(e[0] for e in entries), tuple((e[1], e[2]) for e in entries), tuple(e[3] for e in entries)
    )
    if (
        not frames
        or index.firsts[0] != 0
        or list(index.firsts) != sorted(set(index.firsts))
        or index.firsts[-1] >= chunks
    ):
        raise XetFormatError("packed xorb head lists malformed frames")
    return index


def pack(chunks: Sequence[bytes | memoryview]) -> bytes:
    """The packed object of a xorb's chunks (uncompressed), each frame coded by what measures smallest."""
    groups: list[list[bytes | memoryview]] = [[]]
    firsts = [0]
    filled = 0
    for i, chunk in enumerate(chunks):
        if filled and filled + len(chunk) > FRAME_SIZE:
            groups.append([])
            firsts.append(i)
            filled = 0
        groups[-1].append(chunk)
        filled += len(chunk)
    frames = list(_CODERS.map(lambda g: floatcodec.encode_frame(b"".join(g)), groups))
    head = len(MAGIC) + _COUNTS.size + 4 * len(chunks) + _FRAME.size * len(frames)
    parts = [MAGIC, _COUNTS.pack(len(chunks), len(frames)), struct.pack(f"<{len(chunks)}I", *map(len, chunks))]
    at = head
    for first, frame in zip(firsts, frames, strict=True):
        parts.append(_FRAME.pack(first, at, len(frame), zlib.crc32(frame)))
        at += len(frame)
    return b"".join(parts + frames)


def decode(index: PackedIndex, read: Callable[[int, int], bytes], frame: int) -> bytes | bytearray:
    """The unpacked bytes of ``frame`` (its chunks joined), read by ``read(offset, length)`` and checked."""
    offset, length = index.spans[frame]
    coded = read(offset, length)
    if zlib.crc32(coded) != index.crcs[frame]:  # checked first: a damaged ZipNN stream may abort its decoder
        raise XetFormatError(f"frame {frame} does not match its checksum")
    data = floatcodec.decode_frame(coded)
    if len(data) != sum(index.sizes[index.firsts[frame] : index.chunk_end(frame)]):
        raise XetFormatError(f"frame {frame} holds {len(data)} bytes, not those of its chunks")
    return data


def read_chunks(
    index: PackedIndex,
    read: Callable[[int, int], bytes],
    start: int,
    end: int,
    *,
    frames: Callable[[int], bytes | bytearray] | None = None,
) -> list[bytes | memoryview]:
    """The unpacked bytes of chunks ``[start, end)``, each needed frame decoded by ``frames(frame)`` (default:
    :func:`decode` over ``read(offset, length)``)."""
    if not 0 <= start < end <= len(index.sizes):
        raise XetFormatError(f"chunks [{start}, {end}) are not in a packed xorb of {len(index.sizes)}")
    out: list[bytes | memoryview] = []
    for f in index.frames_for(start, end):
        data = memoryview(frames(f) if frames is not None else decode(index, read, f))
        at = 0
        for c in range(index.firsts[f], index.chunk_end(f)):
            size = index.sizes[c]
            if start <= c < end:
                out.append(data[at : at + size])
            at += size
    return out


def served_offsets(sizes: Sequence[int]) -> list[int]:
    """Byte offsets of each chunk (and the end) in the xorb as served: every chunk stored (scheme 0) after its
    8-byte header."""
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + CHUNK_HEADER_SIZE + size)
    return offsets


def served_header(size: int) -> bytes:
    """The 8-byte Xet chunk header of an uncompressed chunk of ``size`` bytes."""
    return _HEADER.pack(0, size & 0xFFFF, size >> 16, NONE, size & 0xFFFF, size >> 16)
