"""Xorbs: a sequence of (8-byte header, payload) chunks, optionally followed by a footer (protocol spec §4).

:func:`parse_xorb` is the server's check of an upload: it walks every header, decompresses every chunk with a hard
cap at its declared size (a decompression bomb stops there), recomputes every chunk hash and the xorb hash, and
enforces the size limits. :func:`unpack_xorb` makes the same check and keeps what it decompressed: the xorb
re-serialized with every chunk stored uncompressed, written chunk by chunk into one buffer as it is checked (each
chunk decompressed and hashed once, while it is in the CPU cache), so that nothing reading it later decompresses.
Hash-identity of a xorb never depends on its serialized bytes: the same chunks compressed differently, or with a
footer and a nonce, have the same hash.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openckpt.errors import XetFormatError
from openckpt.xet.chunking import MAX_CHUNK
from openckpt.xet.hashes import HASH_SIZE, chunk_hash, hash_to_hex, xorb_hash

__all__ = [
    "BG4_LZ4",
    "CHUNK_HEADER_SIZE",
    "LZ4",
    "MAX_XORB_CHUNKS",
    "MAX_XORB_SIZE",
    "MAX_XORB_UNPACKED",
    "NONE",
    "Xorb",
    "XorbChunk",
    "build_xorb",
    "check_footer",
    "check_header",
    "decode_chunk",
    "decode_chunks",
    "decompress_into",
    "new_buffer",
    "parse_xorb",
    "unpack_xorb",
    "xorb_footer",
]

NONE = 0
LZ4 = 1
"""LZ4 *frame* format (magic ``04 22 4D 18``), not raw blocks."""
BG4_LZ4 = 2
"""Bytes regrouped by position mod 4 (all 0s, then 1s, 2s, 3s), then LZ4 frame."""
SCHEMES = (NONE, LZ4, BG4_LZ4)
CHUNK_HEADER_SIZE = 8
MAX_COMPRESSED = 2 * MAX_CHUNK
MAX_XORB_SIZE = 80 << 20
"""Largest serialized xorb accepted: 64 MiB of data, 8 bytes of header per chunk, and a footer, with room to spare."""
MAX_XORB_UNPACKED = (64 << 20) + MAX_CHUNK
"""Largest total uncompressed size accepted: the client cuts xorbs at 64 MiB (one chunk of slack)."""
MAX_XORB_CHUNKS = 64 << 10
"""Most chunks accepted in one xorb; the client cuts at 8,192, so this only bounds memory and work."""
PAGE = 4096
FOOTER_IDENT = b"XETBLOB"
_HASHES_IDENT = b"XBLBHSH"
_BOUNDARY_IDENT = b"XBLBBND"
_FOOTER_FIXED = 92
_HEADER = struct.Struct("<BHBBHB")  # version, compressed u24 (lo16, hi8), scheme, uncompressed u24 (lo16, hi8)


@dataclass(frozen=True)
class XorbChunk:
    """One chunk of a serialized xorb: its hash, byte range ``[start, end)`` incl. its header, size and scheme."""

    hash: bytes
    start: int
    end: int
    size: int
    scheme: int


@dataclass(frozen=True)
class Xorb:
    """A parsed xorb: its hash, its chunks in order, and its serialized length (footer included when present)."""

    hash: bytes
    chunks: tuple[XorbChunk, ...]
    serialized_size: int
    footer_size: int = 0
    _offsets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offsets = [0]
        for chunk in self.chunks:
            offsets.append(offsets[-1] + chunk.size)
        object.__setattr__(self, "_offsets", tuple(offsets))

    @property
    def hex(self) -> str:
        """The hash's string form."""
        return hash_to_hex(self.hash)

    @property
    def unpacked_size(self) -> int:
        """Total uncompressed bytes of all chunks."""
        return self._offsets[-1]

    def unpacked_offset(self, index: int) -> int:
        """Uncompressed offset of chunk ``index`` in the xorb; ``len(chunks)`` gives the total size."""
        if not 0 <= index <= len(self.chunks):
            raise IndexError(f"chunk index {index} out of range 0..{len(self.chunks)}")
        return self._offsets[index]

    def byte_range(self, start: int, end: int) -> tuple[int, int]:
        """Serialized byte range ``[first, last)`` holding chunks ``[start, end)``, headers included."""
        if not 0 <= start < end <= len(self.chunks):
            raise IndexError(f"chunk range [{start}, {end}) not in a xorb of {len(self.chunks)} chunks")
        return self.chunks[start].start, self.chunks[end - 1].end


def new_buffer(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes, not zeroed, starting on a page boundary (so that a store may write it to
    disk with ``O_DIRECT``, without a staging copy): numpy's, whose large allocations the kernel backs with huge
    pages. A ``bytearray`` of 64 MB is zeroed first and faulted in 4 KiB at a time, which cost 0.66 CPU-s per GB
    filled on the reference VM, against 0.17 for this."""
    import numpy as np

    whole = np.empty(size + PAGE, dtype=np.uint8)
    start = -whole.ctypes.data % PAGE
    return whole[start : start + size].data


def _lz4() -> Any:
    import lz4.frame

    return lz4.frame


def _bg4_split(data: bytes | memoryview) -> bytes:
    raw = bytes(data)
    return raw[0::4] + raw[1::4] + raw[2::4] + raw[3::4]


def _bg4_join_into(grouped: bytes | memoryview, out: memoryview) -> None:
    """Write into ``out`` the bytes that BG4 regrouped as ``grouped`` (byte ``i`` of every 4 in group ``i % 4``)."""
    import numpy as np

    q, r = divmod(len(grouped), 4)
    source = np.frombuffer(grouped, dtype=np.uint8)
    target = np.frombuffer(out, dtype=np.uint8)
    pos = 0
    for i in range(4):
        length = q + (1 if i < r else 0)
        target[i::4] = source[pos : pos + length]
        pos += length


def _bg4_join(grouped: bytes) -> bytes:
    out = bytearray(len(grouped))
    _bg4_join_into(grouped, memoryview(out))
    return bytes(out)


def _lz4_decompress(payload: memoryview, size: int, where: str) -> bytes:
    """An LZ4 frame's content, which must be exactly ``size`` bytes (never more is decompressed). The frame module's
    own chunk call, which ``LZ4FrameDecompressor`` wraps: it reads the payload in place, where the wrapper copies it
    to bytes first (3x the CPU per chunk)."""
    from lz4.frame import _frame

    try:
        out, used, eof = _frame.decompress_chunk(_frame.create_decompression_context(), payload, size)
    except RuntimeError as exc:
        raise XetFormatError(f"{where}: corrupt LZ4 frame ({exc})") from None
    if len(out) != size or not eof:
        raise XetFormatError(f"{where}: LZ4 frame does not decompress to exactly the declared {size} bytes")
    if used != len(payload):
        raise XetFormatError(f"{where}: {len(payload) - used} stray bytes after the LZ4 frame")
    return bytes(out)


def _decompress(payload: memoryview, scheme: int, size: int, where: str) -> bytes | memoryview:
    if scheme == NONE:
        if len(payload) != size:
            raise XetFormatError(f"{where}: uncompressed chunk of {len(payload)} bytes declares {size}")
        return payload
    out = _lz4_decompress(payload, size, where)
    return _bg4_join(out) if scheme == BG4_LZ4 else out


def decompress_into(payload: memoryview, scheme: int, out: memoryview, where: str) -> None:
    """Decompress a chunk's payload into ``out``, which has exactly its declared uncompressed size."""
    if scheme == NONE:
        if len(payload) != len(out):
            raise XetFormatError(f"{where}: uncompressed chunk of {len(payload)} bytes declares {len(out)}")
        out[:] = payload
        return
    data = _lz4_decompress(payload, len(out), where)
    if scheme == BG4_LZ4:
        _bg4_join_into(data, out)
    else:
        out[:] = data


def _read_header(view: memoryview, pos: int) -> tuple[int, int, int]:
    """``(compressed length, scheme, uncompressed length)`` of the chunk header at ``pos``, checked."""
    if len(view) - pos < CHUNK_HEADER_SIZE:
        raise XetFormatError(f"truncated chunk header at byte {pos}")
    clen, scheme, ulen = check_header(view[pos : pos + CHUNK_HEADER_SIZE], pos)
    if len(view) - pos - CHUNK_HEADER_SIZE < clen:
        raise XetFormatError(f"chunk at byte {pos}: payload of {clen} bytes is truncated")
    return clen, scheme, ulen


def check_header(header: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    """``(compressed length, scheme, uncompressed length)`` of an 8-byte chunk header (at byte ``pos`` of its xorb),
    checked against the format and the size limits."""
    version, clo, chi, scheme, ulo, uhi = _HEADER.unpack_from(header)
    clen, ulen = clo | chi << 16, ulo | uhi << 16
    if version != 0:
        raise XetFormatError(f"chunk header at byte {pos}: unsupported version {version}")
    if scheme not in SCHEMES:
        raise XetFormatError(f"chunk header at byte {pos}: unknown compression scheme {scheme}")
    if not 0 < ulen <= MAX_CHUNK:
        raise XetFormatError(f"chunk header at byte {pos}: uncompressed size {ulen} not in 1..{MAX_CHUNK}")
    if clen > MAX_COMPRESSED:
        raise XetFormatError(f"chunk header at byte {pos}: compressed size {clen} over {MAX_COMPRESSED}")
    return clen, scheme, ulen


def parse_xorb(
    data: bytes | memoryview,
    *,
    expected_hash: bytes | None = None,
    max_size: int = MAX_XORB_SIZE,
    max_chunks: int = MAX_XORB_CHUNKS,
    max_unpacked: int = MAX_XORB_UNPACKED,
) -> Xorb:
    """Check a serialized xorb completely (headers, decompression, every hash, limits) and describe its chunks."""
    view = memoryview(data).cast("B")
    if len(view) > max_size:
        raise XetFormatError(f"xorb of {len(view)} bytes is over the limit of {max_size}")
    chunks: list[XorbChunk] = []
    for start, clen, scheme, ulen in _headers(view, max_chunks=max_chunks, max_unpacked=max_unpacked):
        chunk = _payload(view, start, clen, scheme, ulen)
        chunks.append(XorbChunk(chunk_hash(chunk), start, start + CHUNK_HEADER_SIZE + clen, len(chunk), scheme))
    computed = xorb_hash([(c.hash, c.size) for c in chunks])
    if expected_hash is not None and computed != expected_hash:
        raise XetFormatError(f"xorb content hashes to {hash_to_hex(computed)}, not {hash_to_hex(expected_hash)}")
    footer_size = len(view) - chunks[-1].end
    if footer_size:
        check_footer(view[chunks[-1].end :], computed, chunks)
    return Xorb(computed, tuple(chunks), len(view), footer_size)


def _payload(view: memoryview, pos: int, clen: int, scheme: int, ulen: int) -> bytes | memoryview:
    """The uncompressed bytes of the chunk whose checked header is at ``pos``."""
    return _decompress(
        view[pos + CHUNK_HEADER_SIZE : pos + CHUNK_HEADER_SIZE + clen], scheme, ulen, f"chunk at byte {pos}"
    )


def _headers(view: memoryview, *, max_chunks: int, max_unpacked: int) -> list[tuple[int, int, int, int]]:
    """``(start, compressed length, scheme, uncompressed length)`` of each chunk up to the end or a footer, checked
    against the limits before anything is decompressed."""
    heads: list[tuple[int, int, int, int]] = []
    pos = 0
    unpacked = 0
    while pos < len(view) and view[pos : pos + len(FOOTER_IDENT)] != FOOTER_IDENT:
        clen, scheme, ulen = _read_header(view, pos)
        unpacked += ulen
        if len(heads) >= max_chunks:
            raise XetFormatError(f"xorb has more than {max_chunks} chunks")
        if unpacked > max_unpacked:
            raise XetFormatError(f"xorb holds more than {max_unpacked} uncompressed bytes")
        heads.append((pos, clen, scheme, ulen))
        pos += CHUNK_HEADER_SIZE + clen
    if not heads:
        raise XetFormatError("xorb has no chunks")
    return heads


def unpack_xorb(
    data: bytes | bytearray | memoryview,
    *,
    expected_hash: bytes | None = None,
    max_size: int = MAX_XORB_SIZE,
    max_chunks: int = MAX_XORB_CHUNKS,
    max_unpacked: int = MAX_XORB_UNPACKED,
    buffer: Callable[[int], memoryview] | None = None,
) -> tuple[Xorb, memoryview]:
    """Check a serialized xorb as :func:`parse_xorb` does and return it re-serialized with every chunk uncompressed
    and no footer, into ``buffer(size)`` (default :func:`new_buffer`), described by the returned :class:`Xorb` (same
    hash, chunks at their new byte ranges). A xorb already stored so (no compressed chunk, no footer) is returned as
    it came, a view of ``data``."""
    view = memoryview(data).cast("B")
    if len(view) > max_size:
        raise XetFormatError(f"xorb of {len(view)} bytes is over the limit of {max_size}")
    heads = _headers(view, max_chunks=max_chunks, max_unpacked=max_unpacked)
    body_end = heads[-1][0] + CHUNK_HEADER_SIZE + heads[-1][1]
    as_sent = all(scheme == NONE for _, _, scheme, _ in heads)
    size = sum(ulen for *_, ulen in heads) + CHUNK_HEADER_SIZE * len(heads)
    target = view[:body_end] if as_sent else (buffer or new_buffer)(size)
    chunks: list[XorbChunk] = []
    at = 0
    for pos, clen, scheme, ulen in heads:
        end = at + CHUNK_HEADER_SIZE + ulen
        chunk = target[at + CHUNK_HEADER_SIZE : end]
        if as_sent:
            if clen != ulen:
                raise XetFormatError(f"chunk at byte {pos}: uncompressed chunk of {clen} bytes declares {ulen}")
        else:
            _HEADER.pack_into(target, at, 0, ulen & 0xFFFF, ulen >> 16, NONE, ulen & 0xFFFF, ulen >> 16)
            payload = view[pos + CHUNK_HEADER_SIZE : pos + CHUNK_HEADER_SIZE + clen]
            decompress_into(payload, scheme, chunk, f"chunk at byte {pos}")
        chunks.append(XorbChunk(chunk_hash(chunk), at, end, ulen, NONE))
        at = end
    computed = xorb_hash([(c.hash, c.size) for c in chunks])
    if expected_hash is not None and computed != expected_hash:
        raise XetFormatError(f"xorb content hashes to {hash_to_hex(computed)}, not {hash_to_hex(expected_hash)}")
    if body_end < len(view):  # the footer must describe the chunks as sent
        sent = [
            XorbChunk(c.hash, pos, pos + CHUNK_HEADER_SIZE + clen, c.size, scheme)
            for c, (pos, clen, scheme, _) in zip(chunks, heads, strict=True)
        ]
        check_footer(view[body_end:], computed, sent)
    return Xorb(computed, tuple(chunks), len(target)), target


def decode_chunk(data: bytes | memoryview, chunk: XorbChunk, *, offset: int = 0, verify: bool = True) -> bytes:
    """The uncompressed bytes of ``chunk`` from serialized xorb bytes that start at xorb byte ``offset`` (a whole
    xorb, or a ranged read); checks the chunk hash unless ``verify`` is false."""
    view = memoryview(data).cast("B")
    start, end = chunk.start - offset, chunk.end - offset
    if not 0 <= start < end <= len(view):
        raise XetFormatError(
            f"chunk [{chunk.start}, {chunk.end}) is outside xorb bytes [{offset}, {offset + len(view)})"
        )
    clen, scheme, ulen = _read_header(view, start)
    if start + CHUNK_HEADER_SIZE + clen != end or ulen != chunk.size:
        raise XetFormatError(f"chunk header at byte {chunk.start} does not match the recorded chunk")
    out = bytes(_decompress(view[start + CHUNK_HEADER_SIZE : end], scheme, ulen, f"chunk at byte {chunk.start}"))
    if verify and chunk_hash(out) != chunk.hash:
        raise XetFormatError(f"chunk at byte {chunk.start} does not hash to {hash_to_hex(chunk.hash)}")
    return out


def decode_chunks(data: bytes | memoryview) -> list[bytes]:
    """The uncompressed bytes of each chunk of a run of serialized chunks, such as a fetched xorb byte range."""
    view = memoryview(data).cast("B")
    limit = len(view) // CHUNK_HEADER_SIZE + 1
    if not view:
        return []
    heads = _headers(view, max_chunks=limit, max_unpacked=limit * MAX_CHUNK)
    return [bytes(_payload(view, pos, clen, scheme, ulen)) for pos, clen, scheme, ulen in heads]


def _encode(chunk: bytes | memoryview, scheme: int) -> tuple[int, bytes | memoryview]:
    if scheme == NONE:
        return NONE, chunk
    frame = _lz4()
    packed: bytes = frame.compress(_bg4_split(chunk) if scheme == BG4_LZ4 else chunk)
    return (scheme, packed) if len(packed) < len(chunk) else (NONE, chunk)


def build_xorb(chunks: Sequence[bytes | memoryview], *, scheme: int = LZ4, footer: bool = False) -> bytes:
    """Serialize chunks as a xorb (footer-less like hf_xet's upload body unless ``footer``); stores a chunk
    uncompressed when ``scheme`` does not make it smaller."""
    if scheme not in SCHEMES:
        raise XetFormatError(f"unknown compression scheme {scheme}")
    parts: list[bytes | memoryview] = []
    for chunk in chunks:
        if not 0 < len(chunk) <= MAX_CHUNK:
            raise XetFormatError(f"a chunk has 1..{MAX_CHUNK} bytes, not {len(chunk)}")
        used, payload = _encode(chunk, scheme)
        clen, ulen = len(payload), len(chunk)
        parts += [_HEADER.pack(0, clen & 0xFFFF, clen >> 16, used, ulen & 0xFFFF, ulen >> 16), payload]
    body = b"".join(parts)
    return body + xorb_footer(parse_xorb(body)) if footer else body


def xorb_footer(xorb: Xorb, *, nonce: bytes = bytes(4)) -> bytes:
    """The ``XorbObjectInfoV1`` footer of a parsed xorb, with its trailing ``info_length`` (§4.4)."""
    n = len(xorb.chunks)
    hashes = _HASHES_IDENT + b"\x00" + struct.pack("<I", n) + b"".join(c.hash for c in xorb.chunks)
    offsets = [xorb.unpacked_offset(i + 1) for i in range(n)]
    bounds = _BOUNDARY_IDENT + b"\x01" + struct.pack(f"<I{n}I{n}I", n, *(c.end for c in xorb.chunks), *offsets)
    tail = nonce[:4].ljust(4, b"\x00") + bytes(12)
    info = FOOTER_IDENT + b"\x01" + xorb.hash + hashes + bounds
    info += struct.pack("<III", n, len(hashes) + len(bounds) + 12 + 16, len(bounds) + 12 + 16) + tail
    return info + struct.pack("<I", len(info))


def check_footer(footer: memoryview, computed: bytes, chunks: Sequence[XorbChunk]) -> None:
    """Accept a footer only if it describes exactly the chunks before it."""
    n = len(chunks)
    if len(footer) != _FOOTER_FIXED + 40 * n + 4:
        raise XetFormatError(f"xorb footer of {len(footer)} bytes does not fit {n} chunks")
    (info_length,) = struct.unpack_from("<I", footer, len(footer) - 4)
    if info_length != len(footer) - 4 or bytes(footer[:8]) != FOOTER_IDENT + b"\x01":
        raise XetFormatError("xorb footer is not a version 1 XETBLOB footer")
    if bytes(footer[8 : 8 + HASH_SIZE]) != computed:
        raise XetFormatError("xorb footer names a different xorb hash")
    pos = 8 + HASH_SIZE
    if bytes(footer[pos : pos + 8]) != _HASHES_IDENT + b"\x00" or struct.unpack_from("<I", footer, pos + 8)[0] != n:
        raise XetFormatError("xorb footer hash section is malformed")
    pos += 12
    if bytes(footer[pos : pos + HASH_SIZE * n]) != b"".join(c.hash for c in chunks):
        raise XetFormatError("xorb footer lists different chunk hashes")
    pos += HASH_SIZE * n
    if bytes(footer[pos : pos + 8]) != _BOUNDARY_IDENT + b"\x01" or struct.unpack_from("<I", footer, pos + 8)[0] != n:
        raise XetFormatError("xorb footer boundary section is malformed")
    ends = struct.unpack_from(f"<{n}I", footer, pos + 12)
    if list(ends) != [c.end for c in chunks]:
        raise XetFormatError("xorb footer lists different chunk boundaries")
