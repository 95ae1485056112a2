"""The blob store: immutable blobs named by the sha256 of their bytes.

A blob becomes visible only once its bytes are durable and their sha256 matches the name: writers stream into a
temp file while hashing (never a second pass), then fsync and rename.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from openckpt.errors import BadRequestError, IntegrityError
from openckpt.fsutil import fsync_dir

__all__ = ["BlobStore", "BlobWriter", "LocalBlobStore", "is_sha256"]

READ_CHUNK = 1 << 20


def is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class BlobWriter(Protocol):
    size: int

    def write(self, data: bytes) -> None: ...

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        """Make the blob visible; return its sha256. Raises :class:`BadRequestError` if it is not what was announced."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int | None: ...

    def writer(self) -> BlobWriter: ...

    def local_path(self, sha256: str) -> Path | None:
        """A local file holding the blob, for zero-copy serving; None if the backend has none."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of the blob, in chunks."""
        ...

    def delete(self, sha256: str) -> None: ...


class _LocalWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self.store = store
        self.tmp = store.tmp_dir / uuid.uuid4().hex
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.file.write(data)
        self.size += len(data)

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            digest = self.hash.hexdigest()
            if expected_size is not None and self.size != expected_size:
                raise BadRequestError(f"received {self.size} bytes, expected {expected_size}")
            if expected_sha256 is not None and digest != expected_sha256:
                raise BadRequestError(f"content has sha256 {digest}, expected {expected_sha256}")
            final = self.store.path_of(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tmp, final)
            fsync_dir(final.parent)
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


class LocalBlobStore:
    """Blobs as files under ``root/blobs/ab/cd/<sha256>``; uploads in progress under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise BadRequestError(f"{sha256!r} is not a sha256")
        return self.root / "blobs" / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def size(self, sha256: str) -> int | None:
        try:
            return self.path_of(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def writer(self) -> BlobWriter:
        return _LocalWriter(self)

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
