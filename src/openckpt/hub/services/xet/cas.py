"""The CAS's writes: xorb uploads and shard registration (each shard recorded as an upload for global dedup:
:mod:`.xet_dedup`).

Everything a client uploads is parsed and every hash recomputed before anything is stored or registered; a xorb is
stored as one blob of the blob store with its chunks as they were decompressed to be checked (uncompressed, without
footer), indexed chunk by chunk in the database. An upload is checked as it arrives
(:class:`openckpt.xet.unpacker.XorbUnpacker`: each chunk decompressed, hashed with blake3, and hashed with sha256 for
the blob's name, in one pass while it is in the CPU cache) and streamed into a blob that becomes visible only once
the whole xorb hashes to its name. So a commit's sha256 check reads a file's bytes back and hashes them, never
decompresses them again; the encoding at rest is chosen after the commit
(:mod:`openckpt.hub.services.compression`). A shard
registers files only if every term names chunks the CAS holds and proves, by its verification hash, that the
uploader knows them; a file's sha256 (what commits name it by) stays unverified until a commit needs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from openckpt.errors import XetFormatError, XetUploadError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import XetFile, XetSha256, XetTerm, Xorb, XorbChunk
from openckpt.hub.services import possession
from openckpt.hub.services.lfs.transfers import in_thread, pump
from openckpt.hub.services.storage import gc as storage_gc
from openckpt.hub.services.xet import dedup as xet_dedup
from openckpt.store.blobs import BlobStore
from openckpt.xet import shard as xshard
from openckpt.xet.hashes import (
    ZERO_HASH,
    eligible_for_global_dedup,
    file_hash,
    hash_to_hex,
    hex_to_hash,
    verification_hash,
)
from openckpt.xet.unpacker import SEGMENT_BUFFER, XorbUnpacker
from openckpt.xet.xorb import MAX_XORB_SIZE, new_buffer
from openckpt.xet.xorb import Xorb as XorbDescription

__all__ = ["MAX_SHARD_BYTES", "SEGMENTS", "BufferPool", "parse_hash", "receive_xorb", "register_shard"]

MAX_SHARD_BYTES = xshard.MAX_SHARD_SIZE


class BufferPool:
    """Buffers of ``size`` bytes kept for reuse, at most ``keep``: filling fresh memory costs the kernel's page
    faults (0.3-0.4 CPU-s per GB on the reference VM, against 0.13 into a reused buffer)."""

    def __init__(self, size: int, *, keep: int) -> None:
        self.size = size
        self.keep = keep
        self._free: list[memoryview] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> memoryview:
        """A buffer of ``size`` bytes (old contents): pooled if it fits, else a new one; :meth:`give` it back once
        nothing reads it."""
        if size > self.size:
            return new_buffer(size)
        with self._lock:
            whole = self._free.pop() if self._free else None
        return (whole if whole is not None else new_buffer(self.size))[:size]

    def give(self, view: memoryview) -> None:
        """Return a buffer :meth:`take` gave (any other is ignored)."""
        whole = getattr(view.obj, "data", None)
        if isinstance(whole, memoryview) and len(whole) == self.size:
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(whole)


SEGMENTS = BufferPool(SEGMENT_BUFFER, keep=16)
"""The buffers xorb uploads are gathered in on their way to the store (:class:`XorbUnpacker`, two per upload): up
to eight concurrent uploads reuse them, about 70 MB in all."""


def parse_hash(value: str) -> bytes:
    """The raw bytes of a hash string from a URL; a 400 if it is not one."""
    try:
        return hex_to_hash(value)
    except XetFormatError as e:
        raise XetUploadError(str(e)) from None


# ---- xorbs ------------------------------------------------------------------------------------------------------


def _known(db: Database, xorb_hex: str) -> bool:
    """Whether the CAS holds xorb ``xorb_hex`` (its grace period then restarts: an upload of it will be named soon)."""
    with db.read() as session:
        if session.get(Xorb, xorb_hex) is None:
            return False
    with db.write() as session:
        if session.get(Xorb, xorb_hex) is not None:  # not collected since: its grace period restarts
            storage_gc.keep_alive(session, xorbs=[xorb_hex])
            return True
    return False


async def receive_xorb(
    db: Database, blobs: BlobStore, xorb_hex: str, body: AsyncIterator[bytes], *, size_hint: int | None = None
) -> bool:
    """Validate and store the xorb ``xorb_hex`` a request body (of about ``size_hint`` bytes) uploads, its chunks
    uncompressed; whether it was new (idempotent). A worker thread checks each chunk (decompressed, hashed) as it
    arrives, while its bytes are in the CPU cache, and the result goes to the store in segments; nothing is kept
    whole."""
    parse_hash(xorb_hex)
    if await in_thread(_known, db, xorb_hex):
        await pump(body, lambda parts: None, MAX_XORB_SIZE, "xorb")  # the client sends it anyway: read and dropped
        return False
    upload = await in_thread(_Upload, blobs, xorb_hex, size_hint)
    try:
        await pump(body, upload.feed_all, MAX_XORB_SIZE, "xorb")
        return await in_thread(upload.store, db)
    finally:
        await asyncio.shield(in_thread(upload.close))


class _Upload:
    """A xorb being received: checked by an :class:`XorbUnpacker` whose result streams into a blob writer, hashed
    (sha256, what the blob is named by) in the same pass."""

    def __init__(self, blobs: BlobStore, xorb_hex: str, size_hint: int | None) -> None:
        self.name = xorb_hex
        self.writer = blobs.writer(size_hint, hashed=True)
        self.buffers = [SEGMENTS.take(SEGMENT_BUFFER), SEGMENTS.take(SEGMENT_BUFFER)]
        self.digest = hashlib.sha256()
        self.committed = False
        self.unpacker = XorbUnpacker(
            self.buffers,
            write=lambda part: self.writer.write(cast(bytes, part)),  # every store's writer takes any buffer
            written=self.writer.written,
            expected_hash=parse_hash(xorb_hex),
            hasher=self.digest,
        )

    def feed_all(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        try:
            self.unpacker.feed_all(parts)
        except XetFormatError as e:
            raise XetUploadError(f"xorb {self.name} refused: {e}") from None

    def store(self, db: Database) -> bool:
        """Check the xorb is whole and hashes to its name, then make its blob visible and index its chunks; whether
        it was new."""
        try:
            xorb = self.unpacker.finish()
        except XetFormatError as e:
            raise XetUploadError(f"xorb {self.name} refused: {e}") from None
        blob = self.writer.commit(self.digest.hexdigest(), xorb.serialized_size)
        self.committed = True
        return _index(db, self.name, xorb, blob)

    def close(self) -> None:
        """Drop what was written unless it was committed, and give the buffers back."""
        if not self.committed:
            self.writer.abort()
        for view in self.buffers:
            SEGMENTS.give(view)


def _index(db: Database, xorb_hex: str, xorb: XorbDescription, blob: str) -> bool:
    """Record the xorb stored as ``blob`` and its chunks; False if a concurrent upload of it did first."""
    rows = [
        {
            "xorb_hash": xorb_hex,
            "chunk_index": i,
            "chunk_hash": hash_to_hex(c.hash),
            "unpacked_offset": xorb.unpacked_offset(i),
            "unpacked_size": c.size,
            "byte_start": c.start,
            "byte_end": c.end,
            "global_dedup": eligible_for_global_dedup(c.hash),
        }
        for i, c in enumerate(xorb.chunks)
    ]
    try:
        with db.write() as session:
            if session.get(Xorb, xorb_hex) is not None:
                storage_gc.keep_alive(session, xorbs=[xorb_hex])
                return False
            session.add(
                Xorb(
                    hash=xorb_hex,
                    blob_sha256=blob,
                    serialized_size=xorb.serialized_size,
                    unpacked_size=xorb.unpacked_size,
                    num_chunks=len(xorb.chunks),
                )
            )
            session.flush()
            session.execute(insert(XorbChunk), rows)
    except SQLIntegrityError:  # a concurrent upload of the same xorb won
        return False
    return True


# ---- shards -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    """A stored xorb's chunks as the CAS parsed them: hashes (raw) and unpacked sizes."""

    hashes: list[bytes]
    sizes: list[int]


def _known_xorbs(db: Database, xorbs: Iterable[str]) -> dict[str, _Known]:
    wanted = list(set(xorbs))
    known: dict[str, _Known] = {}
    with db.read() as session:
        for start in range(0, len(wanted), 500):
            rows = session.execute(
                select(XorbChunk.xorb_hash, XorbChunk.chunk_hash, XorbChunk.unpacked_size)
                .where(XorbChunk.xorb_hash.in_(wanted[start : start + 500]))
                .order_by(XorbChunk.xorb_hash, XorbChunk.chunk_index)
            ).tuples()
            for xorb, chunk, size in rows:
                entry = known.setdefault(xorb, _Known([], []))
                entry.hashes.append(hex_to_hash(chunk))
                entry.sizes.append(size)
    return known


@dataclass(frozen=True)
class _File:
    hash: str
    size: int
    sha256: str | None
    terms: list[tuple[str, int, int, int]]
    """(xorb, chunk start, chunk end, unpacked size) of each term."""


def _check_xorb_infos(infos: Sequence[xshard.XorbInfo], known: dict[str, _Known]) -> None:
    for info in infos:
        name = hash_to_hex(info.hash)
        stored = known.get(name)
        if stored is None:
            raise XetUploadError(f"shard lists xorb {name}, which was never uploaded: upload xorbs before shards")
        if [(h, size) for h, _, size in info.chunks] != list(zip(stored.hashes, stored.sizes, strict=True)):
            raise XetUploadError(f"shard describes xorb {name} with other chunks than it holds")


def _check_file(entry: xshard.XetFile, known: dict[str, _Known]) -> _File:
    name = hash_to_hex(entry.hash)
    leaves: list[tuple[bytes, int]] = []
    terms = []
    for number, term in enumerate(entry.terms):
        xorb = hash_to_hex(term.xorb_hash)
        stored = known.get(xorb)
        where = f"file {name}, term {number}"
        if stored is None:
            raise XetUploadError(f"{where}: xorb {xorb} is not stored")
        if not 0 <= term.chunk_start < term.chunk_end <= len(stored.hashes):
            raise XetUploadError(f"{where}: chunks [{term.chunk_start}, {term.chunk_end}) are not in xorb {xorb}")
        hashes = stored.hashes[term.chunk_start : term.chunk_end]
        sizes = stored.sizes[term.chunk_start : term.chunk_end]
        if sum(sizes) != term.size:
            raise XetUploadError(f"{where}: declares {term.size} bytes, its chunks hold {sum(sizes)}")
        if term.verification is None or verification_hash(hashes) != term.verification:
            raise XetUploadError(f"{where}: verification hash does not prove the chunks of xorb {xorb}")
        leaves += zip(hashes, sizes, strict=True)
        terms.append((xorb, term.chunk_start, term.chunk_end, term.size))
    if file_hash(leaves) != entry.hash:
        raise XetUploadError(f"file {name}: its chunks hash to {hash_to_hex(file_hash(leaves))}")
    sha256 = None if entry.sha256 in (None, ZERO_HASH) else entry.sha256.hex()
    return _File(name, sum(size for *_, size in terms), sha256, terms)


def register_shard(
    db: Database, data: bytes | bytearray | memoryview, *, repo: int | None, minted_by: int | None = None
) -> int:
    """Validate an uploaded shard and register its files (for ``repo``'s uploads, and as uploads of the account of
    the access token ``minted_by``); 1 if anything was new, else 0."""
    if len(data) > MAX_SHARD_BYTES:
        raise XetUploadError(f"shard of {len(data)} bytes is over the limit of {MAX_SHARD_BYTES}")
    try:
        parsed = xshard.parse_shard(memoryview(data))
    except XetFormatError as e:
        raise XetUploadError(f"shard refused: {e}") from None
    names = {hash_to_hex(i.hash) for i in parsed.xorbs}
    names.update(hash_to_hex(t.xorb_hash) for f in parsed.files for t in f.terms)
    known = _known_xorbs(db, names)
    _check_xorb_infos(parsed.xorbs, known)
    files = [_check_file(f, known) for f in parsed.files]
    try:
        return _register(db, files, repo, minted_by)
    except SQLIntegrityError:  # a concurrent registration of the same file: it is there now
        return _register(db, files, repo, minted_by)


def _register(db: Database, files: list[_File], repo: int | None, minted_by: int | None) -> int:
    new = 0
    with db.write() as session:  # what the shard names and the CAS already has will be committed soon: kept alive
        storage_gc.keep_alive(session, xorbs={x for f in files for x, *_ in f.terms})
        for f in files:
            if session.get(XetFile, f.hash) is not None:
                storage_gc.keep_alive(session, files=[f.hash])
            else:
                new = 1
                session.add(XetFile(hash=f.hash, size=f.size, num_terms=len(f.terms)))
                session.flush()
                if f.terms:  # an empty file has none (an empty list would insert a row of defaults)
                    session.execute(
                        insert(XetTerm),
                        [
                            {
                                "file_hash": f.hash,
                                "term_index": i,
                                "xorb_hash": x,
                                "chunk_start": s,
                                "chunk_end": e,
                                "size": n,
                            }
                            for i, (x, s, e, n) in enumerate(f.terms)
                        ],
                    )
                    x, s, _, _ = f.terms[0]  # clients ask about the first chunk of every file
                    session.execute(
                        update(XorbChunk)
                        .where(XorbChunk.xorb_hash == x, XorbChunk.chunk_index == s)
                        .values(global_dedup=True)
                    )
            if f.sha256 is not None and session.get(XetSha256, (f.sha256, f.hash)) is None:
                new = 1
                session.add(XetSha256(sha256=f.sha256, file_hash=f.hash, size=f.size, repo_id=repo))
        xet_dedup.record_upload(session, (x for f in files for x, *_ in f.terms), repo=repo, minted_by=minted_by)
        if minted_by is not None:  # the uploader's claim: possession once this registration is verified
            possession.record_xet_uploads(session, minted_by, [(f.sha256 or "", f.hash) for f in files])
    return new
