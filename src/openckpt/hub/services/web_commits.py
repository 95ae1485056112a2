"""Commits made from the web UI's forms: uploaded files (streamed into the store), edited text, deleted files.

They go through the same steps as an API commit (``routes/files.py``): every added file is scanned by the trust
gate, the owner's license policy is enforced, and the branch moves by compare-and-swap (a form carries the commit it
was shown at, so an edit made on an old page is refused instead of overwriting a newer one). A file is stored as Git
LFS by the rule ``preupload`` answers clients with: binary, larger than the inline limit, or an LFS suffix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import BinaryIO

from openckpt.digest import git_blob_sha1, lfs_pointer
from openckpt.errors import BadRequestError
from openckpt.hub.db.engine import Database
from openckpt.hub.services import gate, governance, repos, xet_ingest
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.blob_bytes import GITATTRIBUTES
from openckpt.hub.services.commits import FileChange, create_commit
from openckpt.hub.services.names import check_new_path
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = ["commit_web_changes", "store_upload"]

CHUNK = 1 << 20
LFS_SUFFIXES = tuple(line.split()[0][1:] for line in GITATTRIBUTES.decode().splitlines())


def _is_lfs(path: str, size: int, sample: bytes, max_inline: int) -> bool:
    return size > 0 and (size > max_inline or path.endswith(LFS_SUFFIXES) or b"\0" in sample)


def store_upload(db: Database, store: BlobStore, settings: Settings, path: str, source: BinaryIO) -> FileChange:
    """Stream ``source`` (read from its start) into the store as the new content of ``path``; the change adding
    it, its blob recorded. Memory stays at one chunk whatever the size."""
    path = check_new_path(path.strip("/"))
    source.seek(0, 2)
    size = source.tell()
    source.seek(0)
    if size > settings.max_file_size:
        raise BadRequestError(f"{path} is {size} bytes: larger than this hub's limit of {settings.max_file_size}")
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    writer = store.writer(size)
    sample = b""
    try:
        while chunk := source.read(CHUNK):
            if not sample:
                sample = chunk[:8192]
            sha256.update(chunk)
            sha1.update(chunk)
            writer.write(chunk)
        digest = writer.commit(sha256.hexdigest(), size)
    except BaseException:
        writer.abort()
        raise
    with db.write() as session:
        repos.record_blob(session, digest, size)
    if _is_lfs(path, size, sample, settings.max_inline_bytes):
        return FileChange(path, "add", digest, size, git_blob_sha1(lfs_pointer(digest, size)), lfs=True)
    return FileChange(path, "add", digest, size, sha1.hexdigest())


def commit_web_changes(
    db: Database,
    store: BlobStore,
    settings: Settings,
    principal: Principal,
    repo_id: int,
    branch: str,
    changes: Sequence[FileChange],
    *,
    title: str,
    message: str = "",
    parent_commit: str | None = None,
) -> str:
    """Scan, check against the license policy, and commit ``changes`` on ``branch``; return the commit id."""
    gate.check_changes(db, store, settings, changes, repo_id=repo_id)
    governance.enforce_policy(db, store, settings, repo_id, branch, changes)
    commit_id, _ = create_commit(
        db, repo_id, branch, changes, title=title, message=message, author=principal.name, parent_commit=parent_commit
    )
    if branch == repos.DEFAULT_BRANCH:
        repos.refresh_metadata(db, store, repo_id)
    if settings.xet_ingest:
        added = [c.sha256 for c in changes if c.kind == "add" and c.size >= xet_ingest.MIN_SIZE]
        if added:
            xet_ingest.ingest_later(db, store, settings, added)
    return commit_id
