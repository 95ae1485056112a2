"""A relaxed zip reader that sees what torch (miniz) sees: the central directory, never the CRCs.

It parses the end-of-central-directory record (zip64 too) and the central directory itself, finds each member's
data through its local header (as miniz does), and reports what ``zipfile`` and miniz would disagree on: local and
central names that differ, duplicate names, encryption, data before the archive, traversal and symlinks.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.verdict import Severity

__all__ = ["Entry", "ZipError", "find_eocd", "open_member", "read_entries", "segments"]

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOC = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_MAX_COMMENT = 65535
_ENCRYPTED = 0x01 | 0x40


class ZipError(Exception):
    """The archive cannot be read the way torch/miniz would read it."""


@dataclass(slots=True)
class Entry:
    """One member as the central directory describes it; ``data`` is the absolute offset of its bytes."""

    name: str
    local_name: str
    method: int
    flags: int
    csize: int
    usize: int
    header: int
    data: int
    external: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & _ENCRYPTED)

    @property
    def is_symlink(self) -> bool:
        return (self.external >> 16) & 0o170000 == 0o120000


def find_eocd(buf: Any, start: int, end: int) -> int:
    """Offset of the end-of-central-directory record, or -1."""
    lo = max(start, end - _EOCD.size - _MAX_COMMENT)
    pos: int = buf.rfind(b"PK\x05\x06", lo, end)
    while pos >= 0 and pos + _EOCD.size > end:
        pos = buf.rfind(b"PK\x05\x06", lo, pos)
    return pos


def _archive_end(buf: Any, start: int, eocd: int, end: int) -> int | None:
    """Where the archive whose EOCD record is at ``eocd`` ends, if that record's directory offsets (zip64 too)
    are relative to ``start``; else ``None``."""
    if eocd + _EOCD.size > end:
        return None
    _, disk, _, _, _, cd_size, cd_offset, comment = _EOCD.unpack_from(buf, eocd)
    stop = eocd + _EOCD.size + comment
    if disk != 0 or stop > end:
        return None
    loc = eocd - _EOCD64_LOC.size
    if loc >= start and bytes(buf[loc : loc + 4]) == b"PK\x06\x07":
        pos64 = start + _EOCD64_LOC.unpack_from(buf, loc)[2]
        if pos64 + _EOCD64.size > loc or bytes(buf[pos64 : pos64 + 4]) != b"PK\x06\x06":
            return None
        fields = _EOCD64.unpack_from(buf, pos64)
        return stop if start + fields[9] + fields[8] == pos64 else None
    return stop if start + cd_offset + cd_size == eocd else None


def segments(buf: Any, start: int, end: int, *, limit: int) -> list[tuple[int, int]] | None:
    """``buf[start:end]`` as complete zip archives laid end to end (each ``torch.save`` item of a
    ``torch.distributed.checkpoint`` ``.distcp`` file), or ``None`` unless there are at least two and they cover
    every byte. Only tried when the last archive does not start at ``start``."""
    eocd = find_eocd(buf, start, end)
    if eocd < 0 or _archive_end(buf, start, eocd, end) is not None:
        return None
    found: list[tuple[int, int]] = []
    seg = start
    while seg < end:
        if len(found) >= limit or bytes(buf[seg : seg + 4]) != b"PK\x03\x04":
            return None
        pos = buf.find(b"PK\x05\x06", seg, end)
        stop = None
        while pos >= 0 and stop is None:
            stop = _archive_end(buf, seg, pos, end)
            if stop is None:
                pos = buf.find(b"PK\x05\x06", pos + 1, end)
        if stop is None:
            return None
        found.append((seg, stop))
        seg = stop
    return found if len(found) >= 2 else None


def _name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            fields = extra[pos + 4 : pos + 4 + size]
            values = [struct.unpack_from("<Q", fields, i)[0] for i in range(0, len(fields) - 7, 8)]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        pos += 4 + size
    return usize, csize, offset


def _directory(buf: Any, start: int, end: int) -> tuple[int, int, int, int]:
    """(entry count, size, recorded offset, end) of the central directory, from the (zip64) end records."""
    eocd = find_eocd(buf, start, end)
    if eocd < 0:
        raise ZipError("no end-of-central-directory record")
    _, disk, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(buf, eocd)
    if disk != 0:
        raise ZipError("multi-disk archives are not supported")
    cd_end = eocd
    loc = eocd - _EOCD64_LOC.size
    if loc >= start and bytes(buf[loc : loc + 4]) == b"PK\x06\x07":
        _, _, eocd64, _ = _EOCD64_LOC.unpack_from(buf, loc)
        pos64 = start + eocd64
        if pos64 + _EOCD64.size <= end and bytes(buf[pos64 : pos64 + 4]) == b"PK\x06\x06":
            fields = _EOCD64.unpack_from(buf, pos64)
            count, cd_size, cd_offset = fields[7], fields[8], fields[9]
            cd_end = pos64
    return count, cd_size, cd_offset, cd_end


def _central_entry(
    ctx: Context, buf: Any, pos: int, *, base: int, end: int, member: str | None
) -> tuple[Entry | None, int]:
    """The member whose central directory record is at ``pos`` (None, with a finding, if its local header or data
    is missing), and where the next record starts."""
    f = _CENTRAL.unpack_from(buf, pos)
    flags, method, csize, usize, nlen, elen, clen, external, offset = f[3], f[4], f[8], f[9], *f[10:13], *f[15:]
    raw_name = bytes(buf[pos + 46 : pos + 46 + nlen])
    extra = bytes(buf[pos + 46 + nlen : pos + 46 + nlen + elen])
    usize, csize, offset = _zip64(extra, usize, csize, offset)
    next_pos = pos + 46 + nlen + elen + clen
    name = _name(raw_name, flags)
    header = base + offset
    if header + _LOCAL.size > end or bytes(buf[header : header + 4]) != b"PK\x03\x04":
        ctx.add("zip-local", Severity.INFO, f"{name}: no local header", member=member, inconclusive=True)
        return None, next_pos
    lf = _LOCAL.unpack_from(buf, header)
    lnlen, lelen = lf[9], lf[10]
    local_name = _name(bytes(buf[header + 30 : header + 30 + lnlen]), lf[2])
    data = header + 30 + lnlen + lelen
    if data + csize > end:
        ctx.add("zip-truncated", Severity.INFO, f"{name}: data runs past the end", member=member, inconclusive=True)
        return None, next_pos
    return Entry(name, local_name, method, flags, csize, usize, header, data, external), next_pos


def read_entries(
    ctx: Context, buf: Any, start: int, end: int, member: str | None, *, absolute: bool = False
) -> list[Entry]:
    """The members of the zip archive in ``buf[start:end]``, with findings for anything irregular.

    Offsets are shifted as ``zipfile`` shifts them when data precedes the archive; ``absolute``: read them as
    miniz (``torch.load``) does, from ``start``, whatever precedes the central directory."""
    count, cd_size, cd_offset, cd_end = _directory(buf, start, end)
    if count > ctx.limits.max_entries:
        raise ctx.limit(f"more than {ctx.limits.max_entries} archive entries", member=member)
    base = cd_end - cd_size - cd_offset
    if absolute:
        base, cd_end = start, start + cd_offset + cd_size
        if cd_end > end:
            raise ZipError("central directory offsets point outside the file")
    if base < start or cd_end - cd_size < start:
        raise ZipError("central directory offsets point outside the file")
    if base > start:
        reason = f"{base - start} bytes precede the zip archive (polyglot or self-extracting file)"
        ctx.add("zip-prefix", Severity.SUSPICIOUS, reason, member=member, offset=start)
    entries: list[Entry] = []
    pos = cd_end - cd_size
    names: set[str] = set()
    for _ in range(count):
        if pos + _CENTRAL.size > cd_end or bytes(buf[pos : pos + 4]) != b"PK\x01\x02":
            raise ZipError(f"bad central directory entry at offset {pos}")
        entry, pos = _central_entry(ctx, buf, pos, base=base, end=end, member=member)
        if entry is not None:
            entries.append(entry)
            _check_entry(ctx, entry, member, names)
    return entries


def _check_entry(ctx: Context, e: Entry, member: str | None, names: set[str]) -> None:
    where = f"{member}!{e.name}" if member else e.name
    if e.local_name != e.name:
        reason = f"local header names {e.local_name!r}, central directory {e.name!r} (torch reads the central one)"
        ctx.add("zip-name-mismatch", Severity.SUSPICIOUS, reason, member=where, offset=e.header)
    if e.name in names:
        ctx.add("zip-duplicate", Severity.SUSPICIOUS, f"duplicate member name {e.name!r}", member=where)
    names.add(e.name)
    parts = e.name.replace("\\", "/").split("/")
    if e.name.startswith(("/", "\\")) or ".." in parts or (len(e.name) > 1 and e.name[1] == ":"):
        ctx.add("archive-traversal", Severity.SUSPICIOUS, f"member path leaves the archive: {e.name!r}", member=where)
    if e.is_symlink:
        ctx.add("archive-link", Severity.SUSPICIOUS, f"member is a symbolic link: {e.name!r}", member=where)
    ratio_floor = ctx.limits.ratio_floor
    if e.usize > ratio_floor and e.usize > ctx.limits.max_ratio * max(e.csize, 1):
        raise ctx.limit(f"compression ratio of {e.name!r} above {ctx.limits.max_ratio:g}:1", member=where)


def iter_local(buf: Any, start: int, end: int) -> Iterator[Entry]:
    """Members found by walking local headers (no central directory): stored ones with known sizes only."""
    pos = start
    while pos + _LOCAL.size <= end and bytes(buf[pos : pos + 4]) == b"PK\x03\x04":
        lf = _LOCAL.unpack_from(buf, pos)
        flags, method, csize, usize, nlen, elen = lf[2], lf[3], lf[7], lf[8], lf[9], lf[10]
        name = _name(bytes(buf[pos + 30 : pos + 30 + nlen]), flags)
        data = pos + 30 + nlen + elen
        if flags & 0x08 or data + csize > end:
            return
        yield Entry(name, name, method, flags, csize, usize, pos, data, 0)
        pos = data + csize


def open_member(ctx: Context, buf: Any, e: Entry, where: str, limit: int | None = None) -> tuple[Any, int, int]:
    """``(buffer, start, end)`` of a member's uncompressed bytes (zero-copy when stored); at most ``limit``."""
    if e.method == 0:
        end = e.data + e.csize if limit is None else min(e.data + e.csize, e.data + limit)
        return buf, e.data, end
    want = e.usize if limit is None else min(limit, e.usize)
    raw = buf[e.data : e.data + e.csize]
    try:
        if e.method == 8:
            out = zlib.decompressobj(-15).decompress(raw, max(want, 1))
        elif e.method == 12:
            out = bz2.BZ2Decompressor().decompress(raw, max(want, 1))
        elif e.method == 14:
            props = bytes(raw[4 : 4 + struct.unpack_from("<H", raw, 2)[0]])
            filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]  # type: ignore[attr-defined]
            dec = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
            out = dec.decompress(raw[4 + len(props) :], max(want, 1))
        else:
            raise ZipError(f"unsupported compression method {e.method}")
    except (zlib.error, OSError, EOFError, lzma.LZMAError, struct.error) as exc:
        raise ZipError(f"cannot decompress: {exc}") from None
    ctx.unpack(len(out), where)
    return out, 0, len(out)
