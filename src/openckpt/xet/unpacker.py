"""Xorbs checked as they arrive: :class:`XorbUnpacker` takes a serialized xorb in pieces of any size and decodes,
checks and hashes each chunk as soon as its last byte is in, while the piece is still in the CPU cache.

What it writes out is :func:`openckpt.xet.xorb.unpack_xorb`'s result (the xorb re-serialized with every chunk
uncompressed and no footer, after the same checks against the same limits), in segments of two small buffers used in
turn: neither the body as sent nor the result is ever held whole, so a server receiving an upload touches no more
memory than a few segments (fresh memory costs the kernel's page faults, more than decoding it on some machines).
Every byte written out can also go through a hash (``hasher``) in the same pass, so that a store naming it by that
hash need not read it again. Nothing written out is valid before :meth:`XorbUnpacker.finish` has checked the whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from openckpt.errors import XetFormatError
from openckpt.xet.chunking import MAX_CHUNK
from openckpt.xet.hashes import chunk_hash, hash_to_hex, xorb_hash
from openckpt.xet.xorb import (
    _HEADER,
    CHUNK_HEADER_SIZE,
    FOOTER_IDENT,
    MAX_XORB_CHUNKS,
    MAX_XORB_SIZE,
    MAX_XORB_UNPACKED,
    NONE,
    PAGE,
    Xorb,
    XorbChunk,
    check_footer,
    check_header,
    decompress_into,
)

__all__ = ["SEGMENT", "SEGMENT_BUFFER", "XorbUnpacker"]

SEGMENT = 4 << 20
"""Bytes of the result gathered before they are written out (the L2 cache of a core here holds about that)."""
SEGMENT_BUFFER = SEGMENT + CHUNK_HEADER_SIZE + MAX_CHUNK + PAGE
"""Size of each of the two buffers an unpacker needs: a segment, and the chunk that completes it."""


class XorbUnpacker:
    """Feed a serialized xorb's bytes in order (:meth:`feed`), then :meth:`finish`: the xorb stored uncompressed.

    The result goes out through ``write`` in whole pages (the last piece excepted), gathered in ``buffers`` (two of
    at least :data:`SEGMENT_BUFFER` bytes, page-aligned); ``written()`` must return only once what ``write`` was
    given is out of the buffer it was in. ``hasher``, if given, sees every byte of the result in order. Limits are
    checked before each chunk is decompressed, so a decompression bomb stops at its first chunk over them."""

    def __init__(
        self,
        buffers: Sequence[memoryview],
        *,
        write: Callable[[memoryview], None],
        written: Callable[[], None] = lambda: None,
        expected_hash: bytes | None = None,
        max_size: int = MAX_XORB_SIZE,
        max_chunks: int = MAX_XORB_CHUNKS,
        max_unpacked: int = MAX_XORB_UNPACKED,
        hasher: hashlib._Hash | None = None,
    ) -> None:
        if len(buffers) != 2 or min(len(b) for b in buffers) < SEGMENT_BUFFER:
            raise ValueError(f"an unpacker writes through two buffers of {SEGMENT_BUFFER} bytes or more")
        self.buffers, self.write, self.written = buffers, write, written
        self.expected_hash = expected_hash
        self.max_size, self.max_chunks, self.max_unpacked = max_size, max_chunks, max_unpacked
        self.hasher = hasher
        self.out, self.fill, self.base = buffers[0], 0, 0
        """The buffer being filled, how much of it is, and where it starts in the result."""
        self.received = 0
        self.unpacked = 0
        self.pos = 0
        """Where the chunk being received starts in the xorb as sent."""
        self.head: tuple[int, int, int] | None = None
        self.pending = bytearray()
        self.footer: bytearray | None = None
        self.chunks: list[XorbChunk] = []
        self.sent: list[tuple[int, int, int]] = []
        """(start, compressed length, scheme) of each chunk as sent: what a footer describes."""

    def feed_all(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        """:meth:`feed` each of ``parts`` in order."""
        for part in parts:
            self.feed(part)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take the next bytes of the xorb; every chunk they complete is decoded, checked and gathered now."""
        view = memoryview(data).cast("B")
        self.received += len(view)
        if self.received > self.max_size:
            raise XetFormatError(f"xorb of more than {self.max_size} bytes is over the limit")
        if self.footer is not None:
            self.footer += view
            return
        i = 0
        while i < len(view) or (self.head is not None and self.head[0] == len(self.pending)):
            if self.head is None:
                i = self._header(view, i)
                if self.footer is not None:
                    return
                continue
            clen = self.head[0]
            if not self.pending and len(view) - i >= clen:
                self._chunk(view[i : i + clen])
                i += clen
                continue
            take = min(clen - len(self.pending), len(view) - i)
            self.pending += view[i : i + take]
            i += take
            if len(self.pending) == clen:
                payload, self.pending = self.pending, bytearray()
                self._chunk(memoryview(payload))

    def _header(self, view: memoryview, i: int) -> int:
        """Read (or complete) the next chunk header from ``view[i:]``, or see the footer start; where reading
        stopped."""
        if not self.pending and len(view) - i >= CHUNK_HEADER_SIZE:
            header, i = view[i : i + CHUNK_HEADER_SIZE], i + CHUNK_HEADER_SIZE
        else:
            take = min(CHUNK_HEADER_SIZE - len(self.pending), len(view) - i)
            self.pending += view[i : i + take]
            i += take
            if len(self.pending) < CHUNK_HEADER_SIZE:
                return i
            header, self.pending = memoryview(bytes(self.pending)), bytearray()
        if header[: len(FOOTER_IDENT)] == FOOTER_IDENT:
            self.footer = bytearray(header) + view[i:]
            return len(view)
        clen, scheme, ulen = check_header(header, self.pos)
        if len(self.chunks) >= self.max_chunks:
            raise XetFormatError(f"xorb has more than {self.max_chunks} chunks")
        self.unpacked += ulen
        if self.unpacked > self.max_unpacked:
            raise XetFormatError(f"xorb holds more than {self.max_unpacked} uncompressed bytes")
        self.head = (clen, scheme, ulen)
        return i

    def _chunk(self, payload: memoryview) -> None:
        assert self.head is not None
        clen, scheme, ulen = self.head
        out, at = self.out, self.fill
        end = at + CHUNK_HEADER_SIZE + ulen
        _HEADER.pack_into(out, at, 0, ulen & 0xFFFF, ulen >> 16, NONE, ulen & 0xFFFF, ulen >> 16)
        chunk = out[at + CHUNK_HEADER_SIZE : end]
        decompress_into(payload, scheme, chunk, f"chunk at byte {self.pos}")
        self.chunks.append(XorbChunk(chunk_hash(chunk), self.base + at, self.base + end, ulen, NONE))
        if self.hasher is not None:
            self.hasher.update(out[at:end])
        self.sent.append((self.pos, clen, scheme))
        self.fill, self.pos, self.head = end, self.pos + CHUNK_HEADER_SIZE + clen, None
        if self.fill >= SEGMENT:
            self._flush()

    def _flush(self) -> None:
        """Write out the whole pages gathered; the rest moves to the other buffer, which is free once what was
        written from it before is out."""
        whole = self.fill // PAGE * PAGE
        other = self.buffers[1] if self.out is self.buffers[0] else self.buffers[0]
        self.written()
        self.write(self.out[:whole])
        rest = self.fill - whole
        other[:rest] = self.out[whole : self.fill]
        self.out, self.fill, self.base = other, rest, self.base + whole

    def finish(self) -> Xorb:
        """Check that what was fed is one whole xorb (its hash, and its footer if it has one), write out the rest of
        it, and describe it as written (the chunks at their byte ranges in what went out)."""
        if self.footer is None and (self.head is not None or self.pending):
            if self.head is None:
                raise XetFormatError(f"truncated chunk header at byte {self.pos}")
            raise XetFormatError(f"chunk at byte {self.pos}: payload of {self.head[0]} bytes is truncated")
        if not self.chunks:
            raise XetFormatError("xorb has no chunks")
        computed = xorb_hash([(c.hash, c.size) for c in self.chunks])
        if self.expected_hash is not None and computed != self.expected_hash:
            raise XetFormatError(
                f"xorb content hashes to {hash_to_hex(computed)}, not {hash_to_hex(self.expected_hash)}"
            )
        if self.footer is not None:  # it must describe the chunks as sent
            sent = [
                XorbChunk(c.hash, pos, pos + CHUNK_HEADER_SIZE + clen, c.size, scheme)
                for c, (pos, clen, scheme) in zip(self.chunks, self.sent, strict=True)
            ]
            check_footer(memoryview(self.footer), computed, sent)
        self.written()
        if self.fill:
            self.write(self.out[: self.fill])
            self.written()
        return Xorb(computed, tuple(self.chunks), self.base + self.fill)
