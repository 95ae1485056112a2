"""Mirrors: a remote copy of a :class:`~openckpt.CheckpointManager`'s directory, read when the directory is empty.

A mirror stores files under the names they have in the run directory (``step-00000100/model.safetensors``,
``LATEST``, ``environments/<sha256>.txt``). This module knows what a checkpoint is; a :class:`Mirror` only moves
files. Which class serves a URL is looked up by its prefix, as fsspec does: ``file://`` is :class:`DirectoryMirror`
here, ``hf://buckets/`` is ``openckpt.client.bucket_mirror.BucketMirror``, named by string and imported on first use
(the checkpoint layer sits below the client and never imports it); :func:`register_mirror` adds others.

Uploading in the background is :mod:`openckpt.checkpoint.mirror_writer`'s job.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from openckpt.errors import CheckpointNotFoundError, FormatError, MirrorError
from openckpt.format.manifest import MANIFEST_NAME, Manifest, read_manifest
from openckpt.fsutil import atomic_write, fsync_dir, fsync_file, staged_directory, temp_sibling

__all__ = [
    "LATEST",
    "DirectoryMirror",
    "Mirror",
    "checkpoint_files",
    "fetch_checkpoints",
    "open_mirror",
    "register_mirror",
]

log = logging.getLogger("openckpt")
LATEST = "LATEST"
STEP_NAME = re.compile(r"^step-(\d+)$")


@runtime_checkable
class Mirror(Protocol):
    """Where a manager copies its checkpoints: files named by ``/``-separated paths relative to the run directory."""

    url: str

    def put(self, files: Mapping[str, Path | bytes]) -> None:
        """Store each file (a local path or bytes) under its name; once this returns every one of them is readable."""
        ...

    def get(self, names: Sequence[str], directory: Path) -> None:
        """Write each named file to ``directory / name``; raise :class:`CheckpointNotFoundError` if one is missing."""
        ...

    def read(self, name: str) -> bytes | None:
        """The bytes of a (small) file, or None if the mirror has none of that name."""
        ...

    def list(self, prefix: str) -> dict[str, int]:
        """Name → size of every file under the folder ``prefix`` (``""``: all of them)."""
        ...

    def delete(self, names: Sequence[str]) -> None:
        """Remove these files; names the mirror lacks are ignored."""
        ...


MirrorFactory = Callable[[str], Mirror]
_FACTORIES: dict[str, MirrorFactory | str] = {
    "file://": "openckpt.checkpoint.mirror:DirectoryMirror",
    "hf://buckets/": "openckpt.client.bucket_mirror:BucketMirror",
}


def register_mirror(prefix: str, factory: MirrorFactory) -> None:
    """Serve URLs starting with ``prefix`` (e.g. ``"s3://"``) by ``factory(url)``."""
    _FACTORIES[prefix] = factory


def open_mirror(mirror: str | os.PathLike[str] | Mirror) -> Mirror:
    """The :class:`Mirror` a URL names (a :class:`Mirror` is returned as it is); a bare path is a directory."""
    if isinstance(mirror, Mirror):
        return mirror
    url = os.fspath(mirror)
    if "://" not in url:
        return DirectoryMirror(url)
    for prefix, factory in sorted(_FACTORIES.items(), key=lambda kv: -len(kv[0])):
        if url.startswith(prefix):
            if isinstance(factory, str):
                module, _, name = factory.partition(":")
                factory = _FACTORIES[prefix] = getattr(importlib.import_module(module), name)
            return factory(url)
    raise ValueError(f"no mirror serves {url!r}: known prefixes are {', '.join(sorted(_FACTORIES))}")


class DirectoryMirror:
    """A mirror in a local or mounted directory (``file:///mnt/shared/run-x`` or a plain path); writes are atomic."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        text = os.fspath(url)
        self.root = Path(text.removeprefix("file://"))
        self.url = f"file://{self.root}"

    def _path(self, name: str) -> Path:
        parts = PurePosixPath(name).parts
        if not parts or any(p in ("", ".", "..") for p in parts) or name.startswith("/"):
            raise ValueError(f"not a relative file name: {name!r}")
        return self.root.joinpath(*parts)

    def put(self, files: Mapping[str, Path | bytes]) -> None:
        for name, source in files.items():
            target = self._path(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                atomic_write(target, source)
                continue
            tmp = temp_sibling(target)  # streamed: a checkpoint's files may be larger than memory
            try:
                shutil.copyfile(source, tmp)
                fsync_file(tmp)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(target.parent)

    def get(self, names: Sequence[str], directory: Path) -> None:
        for name in names:
            source = self._path(name)
            if not source.is_file():
                raise CheckpointNotFoundError(f"the mirror {self.url} has no {name}", path=source)
            target = directory.joinpath(*PurePosixPath(name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)

    def read(self, name: str) -> bytes | None:
        path = self._path(name)
        return path.read_bytes() if path.is_file() else None

    def list(self, prefix: str) -> dict[str, int]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return {}
        found = (p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))  # not a copy in progress
        return {p.relative_to(self.root).as_posix(): p.stat().st_size for p in found}

    def delete(self, names: Sequence[str]) -> None:
        for name in names:
            self._path(name).unlink(missing_ok=True)


def checkpoint_files(directory: Path, name: str, manifest: Manifest) -> dict[str, Path]:
    """Mirror name → local path of every file of the committed checkpoint ``directory / name``, and of the package
    list its recipe names beside the checkpoints (``../environments/<sha256>.txt``)."""
    root = directory / name
    files = {f"{name}/{p.relative_to(root).as_posix()}": p for p in sorted(root.rglob("*")) if p.is_file()}
    extra = _outside_file(manifest)
    if extra is not None and (directory / extra).is_file():
        files[extra] = directory / extra
    return files


def _outside_file(manifest: Manifest) -> str | None:
    """The run-directory name of the package list the recipe points to with ``../``, if it does."""
    recipe = manifest.recipe
    if recipe is None or not recipe.packages_file or not recipe.packages_file.startswith("../"):
        return None
    parts = PurePosixPath(recipe.packages_file).parts[1:]
    return "/".join(parts) if parts and ".." not in parts else None


def _mirror_steps(mirror: Mirror) -> list[str]:
    """The checkpoint names the mirror's ``LATEST`` names first, then the other checkpoints it holds, newest first."""
    latest = (mirror.read(LATEST) or b"").decode(errors="replace").strip()
    names = {n.split("/", 1)[0] for n in mirror.list("") if "/" in n}
    steps = sorted((n for n in names if STEP_NAME.match(n)), key=lambda n: -int(n.split("-")[1]))
    if STEP_NAME.match(latest):
        steps = [latest, *[s for s in steps if s != latest]]
    return steps


def fetch_checkpoints(mirror: Mirror, directory: Path, *, skipped: list[str]) -> Iterator[Path]:
    """Download the mirror's checkpoints into ``directory`` one at a time, as the caller asks for the next: the one
    ``LATEST`` names first, then older ones. Each appears under its name only once all its files are there (and its
    package list beside it); the caller verifies its digests as it does a local checkpoint's. ``directory``'s
    ``LATEST`` is set to a checkpoint before it is yielded. Those that cannot be fetched are added to ``skipped``
    (``"name: why"``), so a caller can tell a mirror whose checkpoints are all damaged from an empty one.
    """
    for name in _mirror_steps(mirror):
        files = sorted(mirror.list(name))
        if f"{name}/{MANIFEST_NAME}" not in files:
            log.warning("openckpt: the mirror %s holds %s without its %s; skipping it", mirror.url, name, MANIFEST_NAME)
            skipped.append(f"{name}: no {MANIFEST_NAME} in the mirror (an upload that died?)")
            continue
        target = directory / name
        try:
            with staged_directory(target) as tmp:
                _get_into(mirror, name, [f.split("/", 1)[1] for f in files], tmp)
        except CheckpointNotFoundError as e:
            log.warning("openckpt: cannot fetch %s from the mirror %s: %s", name, mirror.url, e)
            skipped.append(f"{name}: {e}")
            continue
        except Exception as e:
            raise MirrorError(f"reading {name} from the mirror {mirror.url} failed: {e}", path=directory) from e
        try:
            extra = _outside_file(read_manifest(target))
        except FormatError:
            extra = None  # the caller's load says what is wrong with it
        if extra is not None and not (directory / extra).is_file():
            data = mirror.read(extra)
            if data is not None:
                (directory / extra).parent.mkdir(parents=True, exist_ok=True)
                atomic_write(directory / extra, data)
        log.info("openckpt: fetched %s from the mirror %s", name, mirror.url)
        atomic_write(directory / LATEST, f"{name}\n".encode())
        yield target


def _get_into(mirror: Mirror, name: str, inner: Sequence[str], tmp: Path) -> None:
    """Download the files of checkpoint ``name`` into the staged directory ``tmp`` and fsync them."""
    staging = tmp / ".mirror-download"
    mirror.get([f"{name}/{f}" for f in inner], staging)
    for f in inner:
        source = staging.joinpath(name, *PurePosixPath(f).parts)
        target = tmp.joinpath(*PurePosixPath(f).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        fsync_file(target)
    shutil.rmtree(staging, ignore_errors=True)
