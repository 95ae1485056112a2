"""Durable, atomic file system primitives: every file and directory becomes visible via temp → fsync → rename."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_write",
    "durable_write",
    "fsync_dir",
    "fsync_file",
    "remove_tree",
    "staged_directory",
    "temp_sibling",
]


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A unique hidden path next to ``path`` on the same file system (so a rename is atomic)."""
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (creations, renames) — needed after every rename."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: Path, data: bytes) -> None:
    """Write and fsync a new file (inside a directory that is itself committed by rename)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.

    The file is created with ``mode`` (``0o600`` for secrets: never readable by others, not even briefly).
    """
    tmp = temp_sibling(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory without ever leaving a half-deleted one under its name: rename away first."""
    if not path.exists():
        return
    trash = temp_sibling(path, "trash")
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def staged_directory(path: Path) -> Iterator[Path]:
    """Build a directory in a temp sibling, then make it visible at ``path`` in one rename.

    The caller writes (and fsyncs) every file inside the yielded temp dir; on success a directory already at
    ``path`` is replaced, and the parent is fsync'd. On any error the temp dir is removed and ``path`` untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            remove_tree(path)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
