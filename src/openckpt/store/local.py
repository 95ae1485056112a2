"""The local blob store: blobs as files under ``<root>/blobs/ab/cd/<sha256>``.

Writers stream into ``<root>/tmp/<uuid>`` while hashing (never a second pass; or, when the caller hashed the same bytes
in a pass of its own, taking its sha256), then fsync and rename: a blob is visible only once its bytes are durable and
their sha256 matches its name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import mmap
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

from openckpt.errors import IntegrityError, UploadAbortedError, UploadMismatchError
from openckpt.fsutil import fsync_dir
from openckpt.store.blobs import READ_CHUNK, BlobStat, BlobWriter, check_sha256, is_sha256

__all__ = ["DirectFile", "LocalBlobStore", "read_direct"]

SYNC_EVERY = 64 << 20
"""Bytes a buffered writer lets accumulate before it starts writing them back in the background."""
PARALLEL_FROM = 1 << 20
"""Batches from this size are hashed and written in parallel."""
WRITE_BEHIND = 4
"""Batches a writer may have in flight behind its hashing."""
DIRECT_FROM = 16 << 20
"""Blobs announced at least this large are written with ``O_DIRECT``, bypassing the page cache."""
STAGE = 8 << 20
ALIGN = 4096
IOV_MAX = 1024
FILE_MODE, DIR_MODE = 0o600, 0o700
"""Blobs are the hub's alone (private repos' files among them), whatever the process's umask."""


class _LocalWriter:
    """Streams into ``tmp/<uuid>`` while hashing. Large batches are written behind, in order, by a thread of the
    writer's own, while this one hashes on: an upload costs about the time of its hashing alone.

    Blobs announced large are written with ``O_DIRECT`` from an aligned staging buffer: no page cache to fill (page
    allocation costs more CPU than sha256 on some machines) and nothing dirty for the committing fsync to wait for.
    Otherwise writeback starts early (a background ``fdatasync`` every ``SYNC_EVERY`` bytes) for the same reason."""

    def __init__(
        self, store: LocalBlobStore, size_hint: int | None = None, sha256: str | None = None, *, hashed: bool = False
    ) -> None:
        self.store = store
        self.announced = check_sha256(sha256) if sha256 is not None else None
        self.tmp = store.tmp_dir / uuid.uuid4().hex
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        self.hash = None if hashed else hashlib.sha256()
        """None when the caller hashes the bytes itself (``hashed``): the blob is named by the sha256 it gives."""
        self.size = 0
        self.in_file = 0
        self._handed = 0
        self._unsynced = 0
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()  # abort() may come from another thread than a write in progress
        self._staged = _Staged.open(self.fd) if size_hint is not None and size_hint >= DIRECT_FROM else None
        self._behind: ThreadPoolExecutor | None = None
        self._writing: deque[Future[None]] = deque()

    def write(self, data: bytes) -> None:
        self.write_all((data,))

    def write_all(self, chunks: Sequence[bytes]) -> None:
        size = sum(len(c) for c in chunks)
        with self._lock:
            if self._closed:
                raise UploadAbortedError("this upload was aborted")
            sink = self._staged.write if self._staged is not None else partial(_write_fully, self.fd)
            if size >= PARALLEL_FROM:  # hashlib and os.write release the GIL
                while len(self._writing) >= WRITE_BEHIND:
                    self._writing.popleft().result()
                if self._behind is None:
                    self._behind = ThreadPoolExecutor(1, thread_name_prefix="openckpt-blob-write")
                self._writing.append(self._behind.submit(self._write, sink, chunks, size))
            else:
                self._written()
                self._write(sink, chunks, size)
            if self.hash is not None:
                for chunk in chunks:
                    self.hash.update(chunk)
            self.size += size
            self._unsynced += size
            if self._staged is None and self._unsynced >= SYNC_EVERY and not self._flushing():
                self._unsynced = 0
                self._flusher = threading.Thread(target=_sync_quietly, args=(self.fd,), daemon=True)
                self._flusher.start()

    def _write(self, sink: Callable[[Sequence[bytes]], None], chunks: Sequence[bytes], size: int) -> None:
        """Write ``chunks`` with ``sink`` (one batch at a time, in order) and count the bytes now in the file."""
        sink(chunks)
        self._handed += size
        self.in_file = self._handed - (self._staged.fill if self._staged is not None else 0)

    def local_file(self) -> Path | None:
        return self.tmp

    def written(self) -> None:
        with self._lock:
            self._written()

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        try:
            digest = self.hash.hexdigest() if self.hash is not None else (expected_sha256 or self.announced or "")
            if not digest:
                raise ValueError("a blob its caller hashed is named by the sha256 the caller gives")
            if expected_size is not None and self.size != expected_size:
                raise UploadMismatchError(f"received {self.size} bytes, expected {expected_size}")
            for wanted in (expected_sha256, self.announced):
                if wanted is not None and digest != wanted:
                    raise UploadMismatchError(f"content has sha256 {digest}, expected {wanted}")
            with self._lock:
                if self._closed:
                    raise UploadAbortedError("this upload was aborted")
                self._written()
                if self._staged is not None:
                    self._staged.finish()
                self.in_file = self.size
                self._join_flusher()
                os.fsync(self.fd)
                self._close()
            final = self.store.path_of(digest)
            final.parent.parent.mkdir(mode=DIR_MODE, exist_ok=True)  # blobs/ab, then blobs/ab/cd: both private
            final.parent.mkdir(mode=DIR_MODE, exist_ok=True)
            os.replace(self.tmp, final)
            fsync_dir(final.parent)
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with self._lock:
            with contextlib.suppress(BaseException):
                self._written()
            self._join_flusher()
            self._close()
            self.tmp.unlink(missing_ok=True)

    def _written(self) -> None:
        """Wait for the writes behind; the first one that failed raises (and the rest are still waited for)."""
        try:
            while self._writing:
                self._writing.popleft().result()
        finally:
            for pending in self._writing:
                pending.exception()
            self._writing.clear()

    def _flushing(self) -> bool:
        return self._flusher is not None and self._flusher.is_alive()

    def _join_flusher(self) -> None:
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._behind is not None:
                self._behind.shutdown()
            if self._staged is not None:
                self._staged.close()
            os.close(self.fd)


class _Staged:
    """Writes through ``O_DIRECT``: bytes are copied into a page-aligned buffer that goes out in whole blocks (a
    caller's buffer that starts on a page goes out from where it is, but for its last partial block); the unaligned
    tail is written without ``O_DIRECT``. Falls back to plain writes where ``O_DIRECT`` is refused."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = mmap.mmap(-1, STAGE)
        self.view = memoryview(self.buffer)
        self.fill = 0

    @classmethod
    def open(cls, fd: int) -> _Staged | None:
        direct = getattr(os, "O_DIRECT", 0)
        if not direct:
            return None
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | direct)
        except OSError:  # e.g. a file system without O_DIRECT
            return None
        return cls(fd)

    def write(self, chunks: Sequence[bytes | memoryview]) -> None:
        for chunk in chunks:
            data = memoryview(chunk).cast("B")
            if not self.fill and len(data) >= ALIGN and _page_aligned(data):  # straight from the caller's memory
                whole = len(data) // ALIGN * ALIGN
                self._out(data[:whole])
                data = data[whole:]
            while data:
                n = min(len(data), STAGE - self.fill)
                self.view[self.fill : self.fill + n] = data[:n]
                self.fill += n
                data = data[n:]
                if self.fill == STAGE:
                    self._drain(STAGE)

    def finish(self) -> None:
        """Write what is staged: the aligned part directly, the rest through the page cache."""
        self._drain(self.fill // ALIGN * ALIGN)
        if self.fill:
            self._buffered()
            _write_fully(self.fd, [self.view[: self.fill]])
            self.fill = 0

    def close(self) -> None:
        self.view.release()
        self.buffer.close()

    def _drain(self, n: int) -> None:
        self._out(self.view[:n])
        if n:
            rest = self.fill - n  # less than n: the ranges do not overlap
            self.view[:rest] = self.view[n : self.fill]
            self.fill = rest

    def _out(self, data: memoryview) -> None:
        """Write ``data`` (whole blocks, at a block-aligned offset) to the file."""
        done = 0
        while done < len(data):
            try:
                written = os.write(self.fd, data[done:])
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._buffered()  # O_DIRECT refused after all (alignment rules of this file system)
                continue
            if written % ALIGN:
                self._buffered()  # a short write leaves the file offset unaligned: carry on without O_DIRECT
            done += written

    def _buffered(self) -> None:
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~getattr(os, "O_DIRECT", 0))


def _page_aligned(data: memoryview) -> bool:
    """Whether ``data`` (writable memory: read-only objects such as ``bytes`` never are) starts on a page."""
    if data.readonly:
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(data)) % ALIGN == 0


def _write_fully(fd: int, chunks: Sequence[bytes | memoryview]) -> None:
    views = [memoryview(c) for c in chunks if c]
    while views:
        done = os.writev(fd, views[:IOV_MAX])
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


def _sync_quietly(fd: int) -> None:
    """Early writeback only: the commit's own fsync is what counts, and reports any error."""
    with contextlib.suppress(OSError):
        os.fdatasync(fd)


def read_direct(path: Path, start: int, end: int, buffer: memoryview) -> memoryview:
    """Bytes ``[start, end)`` of the file at ``path``, read into ``buffer`` (page-aligned, at least ``end - start``
    plus two pages) with ``O_DIRECT`` where the file system allows it: the disk's DMA writes them there, with no page
    cache to fill and nothing copied out of it. A view of ``buffer``; :class:`IntegrityError` if the file ends
    first."""
    first = start - start % ALIGN
    view = buffer[: -(-end // ALIGN) * ALIGN - first]
    if len(view) < end - first:
        raise ValueError(f"a buffer of {len(buffer)} bytes cannot take bytes [{start}, {end}) read by whole pages")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_DIRECT", 0))
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # a file system without O_DIRECT
    try:
        got = 0
        while first + got < end:
            try:
                n = os.preadv(fd, [view[got:]], first + got)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~getattr(os, "O_DIRECT", 0))
                continue
            if n <= 0:
                raise IntegrityError(f"{path} ends before byte {end}", path=path)
            got += n
    finally:
        os.close(fd)
    return view[start - first : end - first]


class DirectFile:
    """A new local file for bytes nobody needs in the page cache (a scratch copy that is read back in small parts,
    if at all): written with ``O_DIRECT`` from a staging buffer where the file system allows it, then closed."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        self._staged = _Staged.open(self.fd)

    def write(self, chunks: Sequence[bytes | memoryview]) -> None:
        """Append ``chunks`` (they may change once this returns)."""
        if self._staged is not None:
            self._staged.write(chunks)
        else:
            _write_fully(self.fd, chunks)

    def close(self) -> None:
        """Write what is staged and close the file (not synced: it is scratch)."""
        try:
            if self._staged is not None:
                self._staged.finish()
        finally:
            if self._staged is not None:
                self._staged.close()
            os.close(self.fd)


class LocalBlobStore:
    """Blobs as files under ``root/blobs/ab/cd/<sha256>``; uploads in progress under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.tmp_dir.mkdir(mode=DIR_MODE, exist_ok=True)
        (root / "blobs").mkdir(mode=DIR_MODE, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / "blobs" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def size(self, sha256: str) -> int | None:
        found = self.stat(sha256)
        return found.size if found is not None else None

    def stat(self, sha256: str) -> BlobStat | None:
        try:
            st = self.path_of(sha256).stat()
        except FileNotFoundError:
            return None
        return BlobStat(st.st_size, st.st_mtime)

    def writer(self, size_hint: int | None = None, *, sha256: str | None = None, hashed: bool = False) -> BlobWriter:
        return _LocalWriter(self, size_hint, sha256, hashed=hashed)

    def local_path(self, sha256: str) -> Path | None:
        path = self.path_of(sha256)
        return path if path.is_file() else None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self.path_of(sha256)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise IntegrityError("blob is missing from the store", path=path) from None
        with f:
            f.seek(start)
            remaining = (end if end is not None else path.stat().st_size) - start
            while remaining > 0:
                chunk = f.read(min(READ_CHUNK, remaining))
                if not chunk:
                    raise IntegrityError("blob is shorter than recorded", path=path)
                remaining -= len(chunk)
                yield chunk

    def delete(self, sha256: str) -> None:
        self.path_of(sha256).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        for first in sorted((self.root / "blobs").iterdir()):
            for second in sorted(first.iterdir()) if first.is_dir() else ():
                for path in second.iterdir() if second.is_dir() else ():
                    if is_sha256(path.name) and path.name.startswith(first.name + second.name):
                        yield path.name

    def sweep(self, older_than: float) -> int:
        cutoff, removed = time.time() - older_than, 0
        for path in self.tmp_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
        return removed
