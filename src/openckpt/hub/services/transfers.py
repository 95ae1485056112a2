"""LFS transfers: which objects must be uploaded, self-authorising signed URLs, and storing uploads verified."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import queue
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from openckpt.errors import BadRequestError, ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.services import repos
from openckpt.store.blobs import BlobStore, BlobWriter, is_sha256

__all__ = ["MultipartUploads", "check_signature", "receive_blob", "record_blob", "sign"]

BATCH = 4 << 20
"""Bytes of an upload handed to its worker thread at once."""
DEPTH = 4
"""Batches an upload may have queued for its worker thread."""
_THREADS = ThreadPoolExecutor(32, thread_name_prefix="openckpt-transfer")
"""Where uploads start, fsync and record blobs: never on the event loop."""
_FEEDERS = ThreadPoolExecutor(1024, thread_name_prefix="openckpt-upload")
"""One thread per upload in progress (created as needed): slow clients never hold up other uploads."""
T = TypeVar("T")


def _in_thread(fn: Callable[..., T], *args: Any, pool: ThreadPoolExecutor = _THREADS) -> asyncio.Future[T]:
    return asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _mac(secret: bytes, method: str, path: str, expires: int) -> str:
    return hmac.new(secret, f"{method} {path} {expires}".encode(), hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, path: str, ttl: int) -> str:
    """``path?exp=…&sig=…``: a URL that authorises ``method`` on ``path`` until it expires."""
    expires = int(time.time()) + ttl
    return f"{path}?exp={expires}&sig={_mac(secret, method, path, expires)}"


def check_signature(secret: bytes, method: str, path: str, exp: str | None, sig: str | None) -> None:
    if not exp or not sig or not exp.isdigit():
        raise ForbiddenError("this transfer URL is not signed")
    if int(exp) < time.time():
        raise ForbiddenError("this transfer URL has expired: request a new one")
    if not hmac.compare_digest(_mac(secret, method, path, int(exp)), sig):
        raise ForbiddenError("invalid signature on transfer URL")


def record_blob(db: Database, sha256: str, size: int) -> None:
    """Record a verified blob; a no-op if it is known, also when another worker records it concurrently."""
    with db.write() as session:
        repos.record_blob(session, sha256, size)


class _Feeder:
    """Hands batches of an upload, in order, to one worker thread through a queue at most ``DEPTH`` batches deep:
    the event loop keeps receiving while the thread hashes and writes, and memory stays bounded."""

    def __init__(self, sink: Callable[[list[bytes]], None]) -> None:
        self.sink = sink
        self.loop = asyncio.get_running_loop()
        self.queue: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self.slots = asyncio.Semaphore(DEPTH)
        self.error: BaseException | None = None
        self.dropping = False
        self.done = _in_thread(self._run, pool=_FEEDERS)

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            if self.error is None and not self.dropping:
                try:
                    self.sink(batch)
                except BaseException as e:  # handed to the event loop by the next put() or close()
                    self.error = e
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                self.loop.call_soon_threadsafe(self.slots.release)

    async def put(self, batch: list[bytes]) -> None:
        await self.slots.acquire()
        if self.error is not None:
            raise self.error
        self.queue.put(batch)

    async def close(self, *, drop: bool = False) -> None:
        """Wait until the thread has written every batch (or, with ``drop``, skipped the rest)."""
        self.dropping = self.dropping or drop
        self.queue.put(None)
        await asyncio.shield(self.done)
        if self.error is not None and not drop:
            raise self.error


async def _pump(body: AsyncIterator[bytes], sink: Callable[[list[bytes]], None], limit: int, what: str) -> int:
    """Feed ``body`` to ``sink`` in batches of about ``BATCH`` bytes, in a worker thread (see :class:`_Feeder`).
    More than ``limit`` bytes is a :class:`BadRequestError`, raised before the excess is written."""
    feeder = _Feeder(sink)
    batch: list[bytes] = []
    batched = total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            if total > limit:
                raise BadRequestError(f"{what} exceeds the announced {limit} bytes")
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BATCH:
                await feeder.put(batch)
                batch, batched = [], 0
        if batch:
            await feeder.put(batch)
    except BaseException:
        feeder.dropping = True  # stop writing now; the thread is over before the caller cleans up
        with contextlib.suppress(BaseException):
            await feeder.close(drop=True)
        raise
    await feeder.close()
    return total


async def receive_blob(store: BlobStore, db: Database, body: AsyncIterator[bytes], sha256: str, size: int) -> None:
    """Stream an upload into the store, hashing as it arrives; visible (file and row) only if sha256 and size
    match. Whatever goes wrong, including the client going away, leaves no trace but the temp file's removal."""
    if not is_sha256(sha256):
        raise BadRequestError(f"{sha256!r} is not a sha256")
    writer = await _in_thread(partial(store.writer, size, sha256=sha256))
    try:
        await _pump(body, writer.write_all, size, "upload")
    except BaseException:
        await asyncio.shield(_in_thread(writer.abort))
        raise
    await _in_thread(_commit, writer, db, sha256, size)


def _commit(writer: BlobWriter, db: Database, sha256: str, size: int) -> None:
    writer.commit(sha256, size)  # aborts (removes the temp file) if the bytes are not the announced ones
    record_blob(db, sha256, size)


class MultipartUploads:
    """Parts of multipart uploads, kept under ``<data>/multipart/<oid>/`` until completion."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def part_path(self, sha256: str, number: int) -> Path:
        if not is_sha256(sha256) or number < 1:
            raise BadRequestError("invalid multipart upload")
        directory = self.root / sha256
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{number:06d}"

    async def receive_part(self, sha256: str, number: int, body: AsyncIterator[bytes], limit: int) -> str:
        """Store one part; return its ETag (md5, as S3 does)."""
        path = self.part_path(sha256, number)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        md5 = hashlib.md5(usedforsecurity=False)
        with open(tmp, "wb") as f:

            def write(batch: list[bytes]) -> None:
                for chunk in batch:
                    md5.update(chunk)
                    f.write(chunk)

            try:
                await _pump(body, write, limit, f"part {number}")
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        tmp.replace(path)
        return md5.hexdigest()

    def complete(self, store: BlobStore, db: Database, sha256: str, size: int, parts: list[int]) -> None:
        """Join the parts in order into one verified blob (blocking: run it in a worker thread)."""
        directory = self.root / sha256
        if parts != list(range(1, len(parts) + 1)):
            raise BadRequestError("parts must be numbered 1..N without gaps")
        writer = store.writer(size, sha256=sha256)
        try:
            for number in parts:
                path = self.part_path(sha256, number)
                if not path.exists():
                    raise BadRequestError(f"part {number} was not uploaded")
                with open(path, "rb") as f:
                    while chunk := f.read(BATCH):
                        writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        _commit(writer, db, sha256, size)
        shutil.rmtree(directory, ignore_errors=True)
