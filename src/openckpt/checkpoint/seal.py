"""Sealing: adding the sha256 of every file to a committed checkpoint's manifest, off the training loop's path.

sha256 is what the Hugging Face Hub (Git LFS) names a file by; nothing in saving or loading needs it, and on one
core it is slower than writing the file. A training save therefore commits with blake3 only (which ``load`` and
``verify`` check), and a background thread seals the checkpoint moments later: it hashes the files that lack a
sha256 and replaces the manifest atomically (temp → fsync → rename), so a reader sees either manifest, both valid.
A checkpoint whose process died before sealing stays valid (``verify`` checks what it has) and ``seal(path)``
completes it; ``export`` always writes sealed checkpoints.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from openckpt.digest import hash_file
from openckpt.errors import IntegrityError
from openckpt.format.manifest import FileRecord, Manifest, read_manifest, write_manifest

__all__ = ["is_sealed", "seal", "seal_in_background", "wait_for_seals"]

log = logging.getLogger("openckpt.checkpoint")

_lock = threading.Lock()
_path_locks: dict[Path, threading.Lock] = {}
_pending: set[Future[Manifest | None]] = set()
_sealer: ThreadPoolExecutor | None = None


def is_sealed(manifest: Manifest) -> bool:
    """Whether every file the manifest lists has its sha256."""
    return all(rec.sha256 is not None for rec in manifest.files.values())


def _path_lock(path: Path) -> threading.Lock:
    with _lock:
        return _path_locks.setdefault(path, threading.Lock())


def seal(path: str | os.PathLike[str]) -> Manifest:
    """Compute the missing sha256s of the checkpoint at ``path`` and commit its sealed manifest; idempotent.

    Raises :class:`IntegrityError` if a file no longer matches the blake3 it was committed with.
    """
    directory = Path(path).resolve()
    with _path_lock(directory):
        manifest = read_manifest(directory)
        if is_sealed(manifest):
            return manifest
        files = {
            name: rec if rec.sha256 is not None else _sealed(directory, name, rec)
            for name, rec in manifest.files.items()
        }
        sealed = manifest.model_copy(update={"files": files})
        write_manifest(directory, sealed)
        return sealed


def _sealed(directory: Path, name: str, rec: FileRecord) -> FileRecord:
    """``rec`` with the file's sha256, taken only from bytes that still match the committed size and blake3."""
    digest = hash_file(directory / name)
    if (digest.size, digest.blake3) != (rec.size, rec.blake3):
        raise IntegrityError(
            "changed since it was saved (size or blake3 differs): not sealing it", path=directory / name
        )
    return rec.model_copy(update={"sha256": digest.sha256})


def _seal_quietly(directory: Path) -> Manifest | None:
    try:
        return seal(directory)
    except FileNotFoundError:
        return None  # retention removed it first: nothing left to seal
    except Exception:
        log.exception("sealing %s failed; `openckpt verify` or the next push will seal it", directory)
        return None


def seal_in_background(path: str | os.PathLike[str]) -> Future[Manifest | None]:
    """Seal ``path`` on the sealing thread; the interpreter waits for pending seals at exit."""
    global _sealer
    with _lock:
        if _sealer is None:
            _sealer = ThreadPoolExecutor(1, thread_name_prefix="openckpt-seal")
        future = _sealer.submit(_seal_quietly, Path(path).resolve())
        _pending.add(future)
    future.add_done_callback(_pending.discard)
    return future


def wait_for_seals() -> None:
    """Block until every background seal started so far has finished."""
    with _lock:
        pending = list(_pending)
    for future in pending:
        future.result()


atexit.register(wait_for_seals)
