"""Check downloaded files against what the hub's tree says and, for openckpt repos, against ``openckpt.json``.

Every file the hub lists is compared by size and by the id the hub gives it: the sha256 of an LFS file, the git
blob sha1 of a regular one. Every file the manifest lists must also match its size, sha256 and blake3. Each file is
read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from openckpt.digest import FileDigest, digest_bytes, git_blob_sha1, hash_file
from openckpt.errors import IntegrityError, OpenckptError
from openckpt.format.manifest import MANIFEST_NAME, FileRecord, read_manifest

if TYPE_CHECKING:
    from huggingface_hub.hf_api import RepoFile

__all__ = ["Mismatch", "RemoteFile", "check_snapshot", "verify_snapshot"]


@dataclass(frozen=True)
class RemoteFile:
    """A file as the hub's tree describes it."""

    path: str
    size: int
    git_oid: str
    """Git blob sha1 (of the LFS pointer, for LFS files)."""
    sha256: str | None = None
    """The content's sha256, for LFS files."""

    @classmethod
    def of(cls, entry: RepoFile) -> RemoteFile:
        return cls(entry.path, entry.size, entry.blob_id, entry.lfs.sha256 if entry.lfs is not None else None)


@dataclass(frozen=True)
class Mismatch:
    file: str
    message: str


def _short(a: str, b: str) -> str:
    return f"{a[:16]}…, expected {b[:16]}…"


def _check_remote(path: Path, remote: RemoteFile) -> tuple[FileDigest | None, str | None]:
    """The file's digest (None if unreadable) and what is wrong with it, if anything."""
    if not path.is_file():
        return None, "missing"
    size = path.stat().st_size
    if size != remote.size:
        return None, f"size is {size} bytes, the hub says {remote.size}"
    if remote.sha256 is not None:
        digest = hash_file(path)
        actual = digest.sha256 or ""  # hash_file always computes it
        if actual != remote.sha256:
            return digest, f"sha256 is {_short(actual, remote.sha256)} (the hub's LFS oid)"
        return digest, None
    data = path.read_bytes()
    oid = git_blob_sha1(data)
    if oid != remote.git_oid:
        return None, f"git blob sha1 is {_short(oid, remote.git_oid)} (the hub's oid)"
    return digest_bytes(data), None


def check_snapshot(
    directory: Path, remote: Iterable[RemoteFile], *, progress: Callable[[str, int], None] | None = None
) -> list[Mismatch]:
    """Every problem with ``directory`` as a copy of the hub files ``remote``; ``progress(file, nbytes)`` per file.

    Local files the hub does not list (such as huggingface_hub's ``.cache/``) are ignored.
    """
    directory = Path(directory)
    problems: list[Mismatch] = []
    digests: dict[str, FileDigest] = {}
    listed = {f.path: f for f in remote}
    for name, entry in sorted(listed.items()):
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts:
            problems.append(Mismatch(name, "path leaves the download directory"))
            continue
        digest, problem = _check_remote(directory / name, entry)
        if problem is not None:
            problems.append(Mismatch(name, problem))
        elif digest is not None:
            digests[name] = digest
        if progress is not None:
            progress(name, entry.size)
    if MANIFEST_NAME not in digests:
        return problems  # no manifest, or it is already reported as differing
    return [*problems, *_check_manifest(directory, listed, digests, bad={p.file for p in problems})]


def _check_manifest(
    directory: Path, listed: Mapping[str, RemoteFile], digests: Mapping[str, FileDigest], *, bad: set[str]
) -> list[Mismatch]:
    """The files ``openckpt.json`` lists that the repo lacks, or whose digests (read once, in ``digests``) differ
    from its records; files already reported (``bad``) are not checked again."""
    try:
        manifest = read_manifest(directory)
    except OpenckptError as e:
        return [Mismatch(MANIFEST_NAME, str(e))]
    problems: list[Mismatch] = []
    for name, record in sorted(manifest.files.items()):
        if name not in listed:
            problems.append(Mismatch(name, f"listed in {MANIFEST_NAME} but not in the repo"))
        elif name not in bad and (got := digests.get(name)) is not None and (wrong := _differs(got, record)):
            problems.append(Mismatch(name, f"{wrong} ({MANIFEST_NAME})"))
    return problems


def _differs(got: FileDigest, record: FileRecord) -> str | None:
    """How ``got`` first differs from the manifest's ``record`` in size, sha256 or blake3 (an unsealed manifest
    has no sha256 yet), or None."""
    for field in ("size", "sha256", "blake3"):
        actual, expected = getattr(got, field), getattr(record, field)
        if expected is not None and actual != expected:
            text = f"{actual} bytes, expected {expected}" if field == "size" else _short(actual, expected)
            return f"{field} is {text}"
    return None


def verify_snapshot(
    directory: Path, remote: Iterable[RemoteFile], *, progress: Callable[[str, int], None] | None = None
) -> None:
    """:func:`check_snapshot`, raising :class:`IntegrityError` that names every file that differs."""
    problems = check_snapshot(directory, remote, progress=progress)
    if problems:
        listing = "; ".join(f"{p.file}: {p.message}" for p in problems)
        raise IntegrityError(f"{len(problems)} file(s) differ from the hub: {listing}", path=directory)
