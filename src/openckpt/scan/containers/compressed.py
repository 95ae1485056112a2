"""Single-stream compression (gzip, bz2, xz, zlib as joblib writes it) and 7z archives.

Decompression is incremental and bounded: a member may not inflate past ``max_ratio`` (once over ``ratio_floor``
bytes) nor past :data:`MAX_INFLATE` in memory. 7z archives are unpacked with ``py7zr`` (``pip install
'openckpt[scan]'``) under the same limits as zip and tar, counted as the bytes are written; without py7zr a 7z
archive is inconclusive, and any pickle stored in it uncompressed is still found by a byte search.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any

from openckpt.scan.containers import MemberScanner
from openckpt.scan.limits import Context
from openckpt.scan.verdict import Severity

__all__ = ["MAGICS", "MAX_INFLATE", "is_zlib", "scan"]

MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
)
MAX_INFLATE = 4 << 30
_CHUNK = 16 << 20


def is_zlib(head: bytes) -> bool:
    """A zlib header (deflate, valid check bits), as joblib's ``compress=`` files start."""
    return len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(31)
    if kind == "zlib":
        return zlib.decompressobj(15)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


def inflate(ctx: Context, kind: str, buf: Any, start: int, end: int, member: str | None) -> bytes:
    """The decompressed bytes of every concatenated stream, within the limits."""
    out = bytearray()
    cap = min(MAX_INFLATE, ctx.limits.max_unpacked)
    zlike = kind in ("gzip", "zlib")
    data = bytes(buf[start:end])
    while data:
        dec = _decompressor(kind)
        chunk = dec.decompress(data, _CHUNK)
        while True:
            out += chunk
            ctx.unpack(len(chunk), member)
            if len(out) > cap:
                raise ctx.limit(f"more than {cap} bytes decompressed in memory", member=member)
            if len(out) > ctx.limits.ratio_floor and len(out) > ctx.limits.max_ratio * (end - start):
                raise ctx.limit(f"compression ratio above {ctx.limits.max_ratio:g}:1", member=member)
            if dec.eof or (dec.unconsumed_tail == b"" if zlike else dec.needs_input):
                break
            chunk = dec.decompress(dec.unconsumed_tail if zlike else b"", _CHUNK)
        if not dec.eof:
            raise ValueError("compressed stream is truncated")
        data = dec.unused_data
        if kind == "zlib" or not data.strip(b"\x00"):
            break
    return bytes(out)


def scan(
    ctx: Context, router: MemberScanner, kind: str, buf: Any, start: int, end: int, member: str | None, depth: int
) -> str:
    """Decompress and scan the content (routed by its own bytes); 7z is inconclusive."""
    if kind == "7z":
        _scan_7z(ctx, router, buf, start, end, member, depth)
        return kind
    try:
        data = inflate(ctx, kind, buf, start, end, member)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
        ctx.add("compressed-invalid", Severity.INFO, f"cannot decompress {kind}: {e}", member=member, inconclusive=True)
        return kind
    where = f"{member}!{kind}" if member else f"({kind})"
    inner = router.scan(data, 0, len(data), where, depth + 1)
    if inner in ("unknown", "empty", "data"):
        reason = f"{kind} content is not a recognised format: opaque data"
        ctx.add("format-unknown", Severity.OPAQUE, reason, member=where)
    return f"{kind}:{inner}"


def _scan_7z(
    ctx: Context, router: MemberScanner, buf: Any, start: int, end: int, member: str | None, depth: int
) -> None:
    try:
        import py7zr  # noqa: F401
    except ImportError:
        reason = "7z archive: its members cannot be listed without py7zr (pip install 'openckpt[scan]')"
        ctx.add("7z", Severity.INFO, reason, member=member, inconclusive=True)
        _search_7z(router, buf, start, end, member, depth)
        return
    from openckpt.scan.containers import sevenzip

    if not sevenzip.scan(ctx, router, buf, start, end, member, depth):
        _search_7z(router, buf, start, end, member, depth)


def _search_7z(router: MemberScanner, buf: Any, start: int, end: int, member: str | None, depth: int) -> None:
    """Pickles stored uncompressed in a 7z archive that could not be unpacked (already inconclusive)."""
    pos, found = start, 0
    while found < 100:
        hits = [
            p for p in (buf.find(m, pos, end) for m in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")) if p >= 0
        ]
        if not hits:
            break
        pos = min(hits)
        router.scan(buf, pos, end, f"{member or '(7z)'}@{pos}", depth + 1, probe=True)
        pos += 2
        found += 1
