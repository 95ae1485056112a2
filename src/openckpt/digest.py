"""Content digests: sha256 (Git LFS / Hub ids) and blake3 (fast integrity and dedup keys)."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

__all__ = [
    "FileDigest",
    "StreamHasher",
    "blake3_hex",
    "digest_bytes",
    "git_blob_sha1",
    "hash_file",
    "lfs_pointer",
    "sha256_file",
]

CHUNK = 16 << 20


@dataclass(frozen=True)
class FileDigest:
    """Size and digests of a file's bytes."""

    size: int
    sha256: str | None
    """None when it was not computed (a training save leaves it to :func:`openckpt.checkpoint.seal.seal`)."""
    blake3: str


def blake3_hex(data: bytes | memoryview) -> str:
    """blake3 of ``data`` as hex."""
    return blake3.blake3(data).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a blob with this content: sha1 of ``b"blob <size>\\0" + data``."""
    h = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file that stands in a git tree for a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def digest_bytes(data: bytes) -> FileDigest:
    """Size, sha256 and blake3 of in-memory bytes."""
    return FileDigest(len(data), hashlib.sha256(data).hexdigest(), blake3.blake3(data).hexdigest())


class _HashThread(threading.Thread):
    """Feeds queued buffers to a hash object in order, off the caller's thread (hashlib and blake3 drop the GIL)."""

    def __init__(self, hasher: Any) -> None:
        super().__init__(daemon=True)
        self.hasher = hasher
        self.queue: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()

    def run(self) -> None:
        while (buf := self.queue.get()) is not None:
            self.hasher.update(buf)


class StreamHasher:
    """sha256 and blake3 of a byte stream, each computed on its own thread while the caller does I/O.

    Buffers passed to :meth:`update` must stay unchanged until :meth:`finish` returns.
    """

    def __init__(self, *, sha256: bool = True) -> None:
        self.size = 0
        self._threads = [_HashThread(blake3.blake3())]
        if sha256:
            self._threads.append(_HashThread(hashlib.sha256()))
        for t in self._threads:
            t.start()

    def update(self, buf: memoryview) -> None:
        self.size += buf.nbytes
        for t in self._threads:
            t.queue.put(buf)

    def finish(self) -> FileDigest:
        for t in self._threads:
            t.queue.put(None)
        for t in self._threads:
            t.join()
        b3, *sha = (t.hasher.hexdigest() for t in self._threads)
        return FileDigest(self.size, sha[0] if sha else None, b3)


def _chunks(path: Path) -> Iterable[memoryview]:
    with open(path, "rb", buffering=0) as f:
        while True:
            buf = bytearray(CHUNK)
            n = f.readinto(buf)
            if not n:
                return
            yield memoryview(buf)[:n]


def hash_file(path: str | Path) -> FileDigest:
    """Size, sha256 and blake3 of a file, read once."""
    hasher = StreamHasher()
    for chunk in _chunks(Path(path)):
        hasher.update(chunk)
    return hasher.finish()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file as hex."""
    h = hashlib.sha256()
    for chunk in _chunks(Path(path)):
        h.update(chunk)
    return h.hexdigest()
