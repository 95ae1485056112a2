"""Shards (MDB format): which xorb chunk ranges make each file, and which chunks each xorb holds (spec §5).

Uploads carry only the header and the two info sections (``footer_size = 0``); shards the CAS hands out for global
dedup must be complete, with lookup tables and a version-1 footer. Every record of both sections is 48 bytes.
:func:`parse_shard` reads sequentially and never allocates from a count it has not checked against the bytes left.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from openckpt.errors import XetFormatError
from openckpt.xet.chunking import MAX_CHUNK
from openckpt.xet.hashes import HASH_SIZE, ZERO_HASH, hash_to_hex, keyed_chunk_hash

__all__ = [
    "CHUNK_GLOBAL_DEDUP",
    "FileTerm",
    "MAX_SHARD_SIZE",
    "NEVER",
    "Shard",
    "XetFile",
    "XorbInfo",
    "parse_shard",
    "serialize_shard",
]

HEADER_TAG = b"HFRepoMetaData\x00UigEj{\x81W\x83\xa5\xbd\xd9\\\xcd\xd1J\xa9"
HEADER_VERSION = 2
FOOTER_VERSION = 1
RECORD = 48
FOOTER_SIZE = 200
MAX_SHARD_SIZE = 80 << 20
"""Largest shard accepted; the client aims for 64 MiB."""
NEVER = 2**64 - 1
"""``shard_key_expiry`` meaning "never expires"."""
WITH_VERIFICATION = 0x80000000
WITH_METADATA_EXT = 0x40000000
CHUNK_GLOBAL_DEDUP = 0x80000000
"""Chunk flag: the chunk was marked as a global-dedup entry point."""
_BOOKEND_HASH = b"\xff" * HASH_SIZE
_RECORD = struct.Struct("<32sIIII")
_HEADER = struct.Struct("<32sQQ")
_FOOTER = struct.Struct("<9Q32sQQ6QQQQQ")


@dataclass(frozen=True)
class FileTerm:
    """Chunks ``[chunk_start, chunk_end)`` of a xorb, ``size`` bytes uncompressed, with their verification hash."""

    xorb_hash: bytes
    chunk_start: int
    chunk_end: int
    size: int
    verification: bytes | None = None


@dataclass(frozen=True)
class XetFile:
    """A file as a shard describes it: its Xet hash, its terms in order, and its SHA-256 digest when sent."""

    hash: bytes
    terms: tuple[FileTerm, ...]
    sha256: bytes | None = None
    """The ordinary 32-byte SHA-256 digest (``.hex()`` is the Git LFS oid); all zeros for an empty file."""

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return sum(term.size for term in self.terms)


@dataclass(frozen=True)
class XorbInfo:
    """A xorb as a shard lists it: each chunk as ``(hash, uncompressed start offset, size)``."""

    hash: bytes
    chunks: tuple[tuple[bytes, int, int], ...]
    serialized_size: int = 0
    """``num_bytes_on_disk``; hf_xet sends 0."""
    chunk_flags: tuple[int, ...] = ()
    """Per-chunk flags (:data:`CHUNK_GLOBAL_DEDUP`); empty when all are zero."""

    @property
    def unpacked_size(self) -> int:
        """Total uncompressed bytes of the xorb's chunks."""
        return sum(size for _, _, size in self.chunks)


@dataclass(frozen=True)
class Shard:
    """The files and xorbs of a shard; ``hmac_key`` is non-zero when its chunk hashes are keyed."""

    files: tuple[XetFile, ...] = ()
    xorbs: tuple[XorbInfo, ...] = ()
    hmac_key: bytes = ZERO_HASH
    created: int = field(default=0, compare=False)
    key_expiry: int = field(default=NEVER, compare=False)


class _Reader:
    """Sequential 48-byte records over a bounded view."""

    def __init__(self, view: memoryview, pos: int) -> None:
        self.view = view
        self.pos = pos

    def records_left(self) -> int:
        return (len(self.view) - self.pos) // RECORD

    def record(self, what: str) -> tuple[bytes, int, int, int, int]:
        if len(self.view) - self.pos < RECORD:
            raise XetFormatError(f"shard truncated in {what} at byte {self.pos}")
        values: tuple[bytes, int, int, int, int] = _RECORD.unpack_from(self.view, self.pos)
        self.pos += RECORD
        return values

    def need(self, count: int, what: str) -> None:
        if count > self.records_left():
            raise XetFormatError(f"shard declares {count} {what} at byte {self.pos} but has room for fewer")


def _parse_file(reader: _Reader, file_hash: bytes, flags: int, count: int) -> XetFile:
    where = f"file {hash_to_hex(file_hash)}"
    if flags & ~(WITH_VERIFICATION | WITH_METADATA_EXT):
        raise XetFormatError(f"{where}: unknown flags {flags:#010x}")
    verified = bool(flags & WITH_VERIFICATION)
    reader.need(count * (2 if verified else 1) + bool(flags & WITH_METADATA_EXT), f"records for {where}")
    if count == 0 and file_hash != ZERO_HASH:
        raise XetFormatError(f"{where}: a file without terms must be the empty file (hash 0)")
    terms: list[FileTerm] = []
    for _ in range(count):
        xorb, _xorb_flags, size, start, end = reader.record(where)
        if not start < end or not end - start <= size <= (end - start) * MAX_CHUNK:
            raise XetFormatError(f"{where}: term of {size} bytes over chunks [{start}, {end}) is impossible")
        terms.append(FileTerm(xorb, start, end, size))
    if verified:
        terms = [FileTerm(t.xorb_hash, t.chunk_start, t.chunk_end, t.size, reader.record(where)[0]) for t in terms]
    sha256 = _word_swap(reader.record(where)[0]) if flags & WITH_METADATA_EXT else None
    return XetFile(file_hash, tuple(terms), sha256)


def _parse_xorb(reader: _Reader, xorb_hash: bytes, count: int, unpacked: int, on_disk: int) -> XorbInfo:
    where = f"xorb {hash_to_hex(xorb_hash)}"
    if count == 0:
        raise XetFormatError(f"{where}: no chunks")
    reader.need(count, f"chunks for {where}")
    chunks: list[tuple[bytes, int, int]] = []
    flags: list[int] = []
    offset = 0
    for _ in range(count):
        chunk, start, size, chunk_flags, _unused = reader.record(where)
        if start != offset or not 0 < size <= MAX_CHUNK:
            raise XetFormatError(f"{where}: chunk {len(chunks)} at offset {start} of {size} bytes does not follow on")
        chunks.append((chunk, start, size))
        flags.append(chunk_flags)
        offset += size
    if offset != unpacked:
        raise XetFormatError(f"{where}: declares {unpacked} bytes but its chunks hold {offset}")
    return XorbInfo(xorb_hash, tuple(chunks), on_disk, tuple(flags) if any(flags) else ())


def parse_shard(data: bytes | memoryview, *, max_size: int = MAX_SHARD_SIZE) -> Shard:
    """Read an uploaded (footer-less) or complete shard; :class:`XetFormatError` for anything malformed."""
    view = memoryview(data).cast("B")
    if len(view) > max_size:
        raise XetFormatError(f"shard of {len(view)} bytes is over the limit of {max_size}")
    if len(view) < _HEADER.size:
        raise XetFormatError("shard is shorter than its header")
    tag, version, footer_size = _HEADER.unpack_from(view, 0)
    if tag != HEADER_TAG or version != HEADER_VERSION:
        raise XetFormatError("not a version 2 MDB shard (header tag or version)")
    if footer_size not in (0, FOOTER_SIZE):
        raise XetFormatError(f"shard header declares a footer of {footer_size} bytes")
    reader = _Reader(view, _HEADER.size)
    files: list[XetFile] = []
    while True:
        file_hash, flags, count, _, _ = reader.record("file section")
        if file_hash == _BOOKEND_HASH:
            break
        files.append(_parse_file(reader, file_hash, flags, count))
    xorb_info_offset = reader.pos
    xorbs: list[XorbInfo] = []
    while True:
        xorb_hash, _flags, count, unpacked, on_disk = reader.record("xorb section")
        if xorb_hash == _BOOKEND_HASH:
            break
        xorbs.append(_parse_xorb(reader, xorb_hash, count, unpacked, on_disk))
    shard = Shard(tuple(files), tuple(xorbs))
    if footer_size == 0:
        if reader.pos != len(view):
            raise XetFormatError(f"{len(view) - reader.pos} stray bytes after the shard's xorb section")
        return shard
    return _with_footer(view, shard, xorb_info_offset, reader.pos)


def _with_footer(view: memoryview, shard: Shard, xorb_info_offset: int, tables: int) -> Shard:
    """Check a complete shard's footer against the sections already read; returns the shard with its key."""
    footer_offset = len(view) - FOOTER_SIZE
    if footer_offset < tables:
        raise XetFormatError("shard is too short for its footer")
    f = _FOOTER.unpack_from(view, footer_offset)
    n_chunks = sum(len(x.chunks) for x in shard.xorbs)
    expected = _layout(xorb_info_offset, tables, len(shard.files), len(shard.xorbs), n_chunks)
    if f[:9] != expected or f[-1] != footer_offset or footer_offset != expected[7] + 16 * n_chunks:
        raise XetFormatError("shard footer does not match the shard's sections and lookup tables")
    return Shard(shard.files, shard.xorbs, f[9], created=f[10], key_expiry=f[11])


def _layout(xorb_info: int, tables: int, files: int, xorbs: int, chunks: int) -> tuple[int, ...]:
    """The footer's first nine fields: version, section offsets, lookup table offsets and entry counts."""
    xorb_table = tables + 12 * files
    chunk_table = xorb_table + 12 * xorbs
    return FOOTER_VERSION, _HEADER.size, xorb_info, tables, files, xorb_table, xorbs, chunk_table, chunks


def _word_swap(raw: bytes) -> bytes:
    return b"".join(raw[i : i + 8][::-1] for i in range(0, HASH_SIZE, 8))


def _truncate(h: bytes) -> int:
    return int.from_bytes(h[:8], "little")


def _record(h: bytes, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> bytes:
    if len(h) != HASH_SIZE:
        raise XetFormatError(f"a Xet hash has {HASH_SIZE} bytes, not {len(h)}")
    return _RECORD.pack(h, a, b, c, d)


def _file_records(file: XetFile) -> list[bytes]:
    verified = [t.verification is not None for t in file.terms]
    if any(verified) and not all(verified):
        raise XetFormatError(f"file {hash_to_hex(file.hash)}: some terms have a verification hash, some not")
    flags = (WITH_VERIFICATION if all(verified) else 0) | (WITH_METADATA_EXT if file.sha256 is not None else 0)
    out = [_record(file.hash, flags, len(file.terms))]
    out += [_record(t.xorb_hash, 0, t.size, t.chunk_start, t.chunk_end) for t in file.terms]
    out += [_record(t.verification) for t in file.terms if t.verification is not None]
    if file.sha256 is not None:
        out.append(_record(_word_swap(file.sha256)))
    return out


def _table(rows: Iterable[tuple[int, ...]], fmt: str) -> bytes:
    packer = struct.Struct(fmt)
    return b"".join(packer.pack(*row) for row in sorted(rows, key=lambda row: row[0]))


def serialize_shard(
    shard: Shard,
    *,
    footer: bool = True,
    hmac_key: bytes | None = None,
    created: int = 0,
    key_expiry: int = NEVER,
) -> bytes:
    """The shard's bytes: complete with lookup tables and footer, or the footer-less upload form; with
    ``hmac_key`` every chunk hash is keyed (§3.6), as global-dedup answers may be."""
    key = shard.hmac_key
    rekey = hmac_key if hmac_key is not None and hmac_key != ZERO_HASH else None
    if rekey is not None:
        if key != ZERO_HASH:
            raise XetFormatError("the shard's chunk hashes are keyed already")
        if not footer:
            raise XetFormatError("only a shard with a footer can carry an HMAC key")
        key = rekey
    parts = [_HEADER.pack(HEADER_TAG, HEADER_VERSION, FOOTER_SIZE if footer else 0)]
    file_rows: list[tuple[int, int]] = []
    index = 0
    for file in shard.files:
        records = _file_records(file)
        file_rows.append((_truncate(file.hash), index))
        parts += records
        index += len(records)
    parts.append(_record(_BOOKEND_HASH))
    xorb_info_offset = sum(map(len, parts))
    xorb_rows: list[tuple[int, int]] = []
    chunk_rows: list[tuple[int, int, int]] = []
    index = 0
    for xorb in shard.xorbs:
        flags = xorb.chunk_flags or (0,) * len(xorb.chunks)
        if len(flags) != len(xorb.chunks):
            raise XetFormatError(f"xorb {hash_to_hex(xorb.hash)}: chunk_flags and chunks differ in length")
        xorb_rows.append((_truncate(xorb.hash), index))
        parts.append(_record(xorb.hash, 0, len(xorb.chunks), xorb.unpacked_size, xorb.serialized_size))
        for i, ((chunk, start, size), chunk_flags) in enumerate(zip(xorb.chunks, flags, strict=True)):
            listed = keyed_chunk_hash(chunk, rekey) if rekey is not None else chunk
            parts.append(_record(listed, start, size, chunk_flags))
            chunk_rows.append((_truncate(listed), index, i))
        index += 1 + len(xorb.chunks)
    parts.append(_record(_BOOKEND_HASH))
    if not footer:
        return b"".join(parts)
    tables = sum(map(len, parts))
    parts += [_table(file_rows, "<QI"), _table(xorb_rows, "<QI"), _table(chunk_rows, "<QII")]
    footer_offset = sum(map(len, parts))
    stored = sum(x.unpacked_size for x in shard.xorbs)
    on_disk = sum(x.serialized_size for x in shard.xorbs)
    materialized = sum(f.size for f in shard.files)
    layout = _layout(xorb_info_offset, tables, len(file_rows), len(xorb_rows), len(chunk_rows))
    parts.append(
        _FOOTER.pack(*layout, key, created, key_expiry, *(0,) * 6, on_disk, materialized, stored, footer_offset)
    )
    return b"".join(parts)
