"""The blob store interface: immutable blobs named by the sha256 of their bytes.

A blob becomes visible under its name only complete and verified: writers hash while they stream (never a second
pass) and publish atomically on :meth:`BlobWriter.commit`. Backends: :mod:`openckpt.store.local` (files) and
:mod:`openckpt.store.s3` (S3-compatible object storage); :func:`openckpt.store.url.open_store` picks one by URL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from openckpt.errors import InvalidDigestError

__all__ = ["BlobStat", "BlobStore", "BlobWriter", "check_sha256", "is_sha256"]

READ_CHUNK = 8 << 20
"""Bytes a backend hands out per chunk of :meth:`BlobStore.read`."""


def is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def check_sha256(value: str) -> str:
    """``value`` if it is a lowercase hex sha256; an :class:`InvalidDigestError` otherwise."""
    if not is_sha256(value):
        raise InvalidDigestError(f"{value!r} is not a sha256")
    return value


@dataclass(frozen=True)
class BlobStat:
    """What a store knows of a stored blob without reading it."""

    size: int
    modified: float
    """When the blob was last written (seconds since the epoch): a GC spares blobs younger than its grace period."""


class BlobWriter(Protocol):
    size: int
    in_file: int
    """How many of the blob's first bytes are in :meth:`local_file` so far."""

    def write(self, data: bytes) -> None: ...

    def write_all(self, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` in order: one call for a batch lets a backend hash and write it in parallel. The chunks
        must not change after the call: a backend may still be writing them until the commit (or :meth:`written`)."""
        ...

    def written(self) -> None:
        """Wait until every chunk given so far is out of the caller's memory (which it may then reuse)."""
        ...

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        """Make the blob visible; return its sha256. Raises :class:`UploadMismatchError` if it is not what was
        announced."""
        ...

    def abort(self) -> None: ...

    def local_file(self) -> Path | None:
        """The local file the blob is being written into, for readers that follow the write (its first ``in_file``
        bytes are there; open it before :meth:`commit` moves it or :meth:`abort` removes it); None if the backend
        has none."""
        ...


class BlobStore(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int | None: ...

    def stat(self, sha256: str) -> BlobStat | None:
        """Size and write time of a stored blob; None if it is not stored."""
        ...

    def writer(self, size_hint: int | None = None, *, sha256: str | None = None, hashed: bool = False) -> BlobWriter:
        """A writer for a new blob; ``size_hint`` is the size announced for it, ``sha256`` its announced name.

        Both are hints that let a backend write straight to the final place (the commit still verifies them). With
        ``hashed``, the caller itself computes the sha256 of exactly the bytes it writes (in a pass it makes anyway)
        and gives it as ``sha256`` or to :meth:`BlobWriter.commit`: a backend may name the blob by it without hashing
        the bytes again.
        """
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A local file holding the blob, for zero-copy serving; None if the backend has none."""
        ...

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes | memoryview]:
        """Bytes ``[start, end)`` of the blob, in chunks (bytes-like: ``bytes`` or a ``memoryview`` of fresh memory)."""
        ...

    def delete(self, sha256: str) -> None: ...

    def keys(self) -> Iterator[str]:
        """The sha256 of every stored blob, in no particular order (for GC and fsck)."""
        ...

    def sweep(self, older_than: float) -> int:
        """Remove what uploads abandoned ``older_than`` seconds ago or more (a killed process's temp data); return
        how many pieces went."""
        ...
