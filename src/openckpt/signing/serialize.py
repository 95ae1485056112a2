"""A model directory as model-signing resources: every file (or every shard of a file) with its digest.

The names, the order and the digest names match the ``model_signing`` package (OpenSSF model-transparency v1.x):
``files`` names a resource by its POSIX path inside the model, ``shards`` by ``path:start:end``; the algorithm is
``sha256`` / ``blake3`` (``blake2b`` read only), or ``sha256-sharded-<shard_size>`` for shards. Resources sort by
path components, then offsets.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import blake3

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "GIT_PATHS",
    "HASHES",
    "Listing",
    "Resource",
    "Serialization",
    "hash_resources",
    "list_files",
    "normalize_ignore",
    "shard_of",
]

Method = Literal["files", "shards"]
HASHES = ("sha256", "blake3")
"""Hashes openckpt signs with; verification also reads ``blake2b``."""
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
"""Ignored by default, as by ``model_signing``."""
DEFAULT_SHARD_SIZE = 1_000_000_000
_CHUNK = 8 << 20
_Progress = Callable[[int], None]
_ENGINES: dict[str, Callable[[], Any]] = {"sha256": hashlib.sha256, "blake2b": hashlib.blake2b, "blake3": blake3.blake3}


@dataclass(frozen=True)
class Serialization:
    """How a model became resources: the ``predicate.serialization`` object of the statement."""

    method: Method
    hash_type: str
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    shard_size: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("files", "shards"):
            raise ValueError(f"unknown serialization {self.method!r}; use files or shards")
        if self.hash_type not in _ENGINES:
            raise ValueError(f"unsupported hash {self.hash_type!r}; use one of {', '.join(HASHES)}")
        if (self.method == "shards") != (self.shard_size is not None):
            raise ValueError("shard_size goes with the shards method, and only with it")
        if self.shard_size is not None and self.shard_size <= 0:
            raise ValueError(f"shard size must be positive, got {self.shard_size}")

    @property
    def algorithm(self) -> str:
        """The ``algorithm`` of every resource: ``sha256`` or ``sha256-sharded-1000000000``."""
        return self.hash_type if self.shard_size is None else f"{self.hash_type}-sharded-{self.shard_size}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "hash_type": self.hash_type}
        if self.shard_size is not None:
            out["shard_size"] = self.shard_size
        out["allow_symlinks"] = self.allow_symlinks
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Serialization:
        """Parse ``predicate.serialization``; ``model_signing`` writes ``shard_size`` as a float (``1024.0``)."""
        if not isinstance(obj, dict):
            raise ValueError("serialization is not an object")
        method, hash_type, allow = obj.get("method"), obj.get("hash_type"), obj.get("allow_symlinks", False)
        if method not in ("files", "shards"):
            raise ValueError(f"unknown serialization method {method!r}")
        if not isinstance(hash_type, str) or not isinstance(allow, bool):
            raise ValueError("serialization needs a string hash_type and a boolean allow_symlinks")
        ignore = obj.get("ignore_paths", [])
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise ValueError("ignore_paths is not a list of strings")
        size = obj.get("shard_size") if method == "shards" else None
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int | float) or size != int(size):
                raise ValueError(f"shard_size {size!r} is not an integer")
            size = int(size)
        elif method == "shards":
            raise ValueError("shards serialization without shard_size")
        return cls(method, hash_type, allow, tuple(ignore), size)


@dataclass(frozen=True)
class Resource:
    """One signed item: a file or a shard, its algorithm and hex digest."""

    name: str
    algorithm: str
    digest: str


@dataclass
class Listing:
    """The files of a model directory that a serialization covers, and what it cannot cover."""

    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """``symlink: a -> b``, ``not a regular file: fifo`` ...: refused when signing, differences when verifying."""


def normalize_ignore(model_dir: Path, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Ignore paths as POSIX names inside the model; absolute ones outside it and ones that climb out are dropped."""
    root = Path(os.path.realpath(model_dir))
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_absolute():
            try:
                path = Path(os.path.realpath(path.parent), path.name).relative_to(root)
            except ValueError:
                continue
        name = PurePosixPath(path.as_posix())
        if ".." in name.parts or str(name) == "." or name.is_absolute():
            continue
        if str(name) not in out:
            out.append(str(name))
    return out


def _ignored(name: str, ignore: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + "/") for p in ignore)


def list_files(model_dir: Path, *, ignore: Iterable[str], allow_symlinks: bool) -> Listing:
    """Every file under ``model_dir`` (hidden ones too) that no ignore path covers, as POSIX names.

    Like ``model_signing``: symlinks are problems unless ``allow_symlinks``; then a link to a file counts as a file
    with its target's bytes and a link to a directory is not followed.
    """
    ignore = list(ignore)
    listing = Listing()

    def walk(directory: Path, prefix: str) -> None:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = prefix + entry.name
            if _ignored(name, ignore):
                continue
            if entry.is_symlink():
                target = os.readlink(entry.path)
                if not allow_symlinks:
                    listing.problems.append(f"symlink: {name} -> {target} (symlinks are not signed)")
                elif entry.is_file():
                    listing.files.append(name)
                elif not entry.is_dir():
                    listing.problems.append(f"broken symlink: {name} -> {target}")
            elif entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), name + "/")
            elif stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                listing.files.append(name)
            else:
                listing.problems.append(f"not a regular file: {name}")

    walk(model_dir, "")
    listing.files.sort(key=_parts)
    return listing


def _parts(name: str) -> tuple[str, ...]:
    return tuple(name.split("/"))


def shard_of(name: str) -> tuple[str, int, int]:
    """``"dir/w.bin:0:1024"`` → ``("dir/w.bin", 0, 1024)``; a path may itself contain ``:``."""
    parts = name.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit() or int(parts[1]) >= int(parts[2]):
        raise ValueError(f"shard name {name!r} is not path:start:end")
    return parts[0], int(parts[1]), int(parts[2])


def _hash_range(path: Path, engine: Callable[[], Any], start: int, end: int | None, progress: _Progress) -> str:
    hasher = engine()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        remaining = end - start if end is not None else None
        while remaining is None or remaining > 0:
            want = _CHUNK if remaining is None else min(_CHUNK, remaining)
            n = f.readinto(view[:want])
            if not n:
                break
            hasher.update(view[:n])
            progress(n)
            if remaining is not None:
                remaining -= n
    return str(hasher.hexdigest())


def _blake3_file(path: Path, progress: _Progress) -> str:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    progress(path.stat().st_size)
    return str(hasher.hexdigest())


def _no_progress(n: int) -> None:
    pass


def hash_resources(
    model_dir: Path,
    files: list[str],
    serialization: Serialization,
    *,
    progress: _Progress | None = None,
) -> list[Resource]:
    """Digest every file or shard, in ``model_signing``'s canonical order; ``progress(nbytes)`` follows reading.

    sha256 files hash in parallel threads, one file each; blake3 hashes one file at a time with all cores (mmap);
    shards of every file hash in parallel threads.
    """
    tick = progress or _no_progress
    engine = _ENGINES[serialization.hash_type]
    algorithm = serialization.algorithm
    workers = os.cpu_count() or 1
    if serialization.shard_size is None:
        if serialization.hash_type == "blake3":
            digests = [_blake3_file(model_dir / name, tick) for name in files]
        else:
            with ThreadPoolExecutor(workers) as pool:
                digests = list(pool.map(lambda n: _hash_range(model_dir / n, engine, 0, None, tick), files))
        return [Resource(name, algorithm, d) for name, d in zip(files, digests, strict=True)]
    size = serialization.shard_size
    shards: list[tuple[str, int, int]] = []
    for name in files:
        length = (model_dir / name).stat().st_size
        shards += [(name, start, min(start + size, length)) for start in range(0, length, size)]
    with ThreadPoolExecutor(workers) as pool:
        digests = list(pool.map(lambda s: _hash_range(model_dir / s[0], engine, s[1], s[2], tick), shards))
    return [Resource(f"{n}:{s}:{e}", algorithm, d) for (n, s, e), d in zip(shards, digests, strict=True)]
