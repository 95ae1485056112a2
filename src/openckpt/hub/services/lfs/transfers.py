"""LFS transfers: which objects must be uploaded, self-authorising signed URLs, and storing uploads verified."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import queue
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from openckpt.errors import BadRequestError, ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.services import repos
from openckpt.store.blobs import BlobStore, BlobWriter, is_sha256

__all__ = ["check_signature", "commit_blob", "in_thread", "pump", "receive_blob", "record_blob", "sign"]

BATCH = 4 << 20
"""Bytes of an upload handed to its worker thread at once."""
DEPTH = 4
"""Batches an upload may have queued for its worker thread."""
_THREADS = ThreadPoolExecutor(32, thread_name_prefix="openckpt-transfer")
"""Where uploads start, fsync and record blobs: never on the event loop."""
_FEEDERS = ThreadPoolExecutor(1024, thread_name_prefix="openckpt-upload")
"""One thread per upload in progress (created as needed): slow clients never hold up other uploads."""
T = TypeVar("T")


def in_thread(fn: Callable[..., T], *args: Any, pool: ThreadPoolExecutor = _THREADS) -> asyncio.Future[T]:
    """``fn(*args)`` in a transfer thread, off the event loop (and outside the request thread limit)."""
    return asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _mac(secret: bytes, method: str, path: str, expires: int) -> str:
    return hmac.new(secret, f"{method} {path} {expires}".encode(), hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, path: str, ttl: int, *, account: int | None = None) -> str:
    """``path?exp=…&sig=…``: a URL that authorises ``method`` on ``path`` until it expires; with ``account``,
    ``path?account=…&exp=…&sig=…``, made out to that account (what it uploads through it is recorded as its own)."""
    expires = int(time.time()) + ttl
    claim = path if account is None else f"{path}?account={account}"
    return f"{claim}{'?' if account is None else '&'}exp={expires}&sig={_mac(secret, method, claim, expires)}"


def check_signature(
    secret: bytes, method: str, path: str, exp: str | None, sig: str | None, *, account: str | None = None
) -> None:
    """:class:`ForbiddenError` unless ``sig`` signs ``method`` on ``path`` (for ``account``, if the URL names one)
    and ``exp`` is still to come."""
    if not exp or not sig or not exp.isdigit():
        raise ForbiddenError("this transfer URL is not signed")
    if int(exp) < time.time():
        raise ForbiddenError("this transfer URL has expired: request a new one")
    claim = path if account is None else f"{path}?account={account}"
    if not hmac.compare_digest(_mac(secret, method, claim, int(exp)), sig):
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
        self.done = in_thread(self._run, pool=_FEEDERS)

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


async def pump(body: AsyncIterator[bytes], sink: Callable[[list[bytes]], None], limit: int, what: str) -> int:
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
    writer = await in_thread(partial(store.writer, size, sha256=sha256))
    try:
        await pump(body, writer.write_all, size, "upload")
    except BaseException:
        await asyncio.shield(in_thread(writer.abort))
        raise
    await in_thread(commit_blob, writer, db, sha256, size)


def commit_blob(writer: BlobWriter, db: Database, sha256: str, size: int) -> None:
    """Publish what ``writer`` received as the blob ``sha256`` of ``size`` bytes and record it."""
    writer.commit(sha256, size)  # aborts (removes the temp file) if the bytes are not the announced ones
    record_blob(db, sha256, size)
