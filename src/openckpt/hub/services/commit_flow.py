"""The commit flow: how every write path changes a repo's files (API and web commits, files uploaded by LFS or Xet
and named by a commit, pull requests opened by a commit, merges and squashes).

One request goes store → scan gate → policy → commit → metadata → ingest → events:

1. **store** (:func:`store_changes`): the bytes that come with the request (:class:`NewFile`) are stored and recorded
   as blobs; a copy (an LFS file named without its size) gets the size of the object it names.
2. **scan gate** and **policy** (:func:`admit`): every LFS or Xet file named is stored and the caller has it
   (``possession``: uploaded by them, or readable to them), every added file is scanned (``gate``), and the license
   policy of the repo's owner and of the hub is checked on the tree the commit would make (``governance``).
3. **commit** (:func:`commit`, :func:`squash`; ``pull_requests.merge``): one write transaction adds the trees and
   the commit, moves the ref by compare-and-swap on the head it was read at (``commits.retried``), opens the pull
   request a ``create_pr`` commit makes and records the commit on it, and writes the webhook events
   (``webhook_outbox``).
4. **metadata** and **ingest** (:func:`settle`): a commit on the default branch refreshes the repo's card-derived
   metadata and starts verifying its weights against their declared bases; added whole blobs are chunked into xorbs
   in the background. These never fail a commit that exists.

Invariants:

- Nothing is visible before the gate and the policy pass: stored bytes are content-addressed blobs that no tree names
  (collected after a grace period if the commit never comes); the commit, its trees, its ref's move, its pull request
  and its events commit in one transaction, or none of them does.
- A ref moves only from the head the attempt read (compare-and-swap): a concurrent commit makes the attempt run again
  on the new head; with ``parent_commit`` a head that moved is a :class:`PreconditionFailedError` (412).
- Events are written in the transaction that moves the ref (they commit or roll back with it, and survive a crash);
  the delivery workers are woken after it commits. A commit that changes nothing moves nothing and announces nothing.
- Only the caller's own files go in: an LFS or Xet object the request names but did not bring must be one the caller
  uploaded or may read (else it is missing, as if the hub lacked it).

Errors are the hub's typed errors: :class:`BadRequestError` (a bad change, a missing object),
:class:`UnsafeUploadError` and :class:`PolicyViolationError` (the gate, the policy), :class:`PreconditionFailedError`,
:class:`ConflictError` (a merge), :class:`RevisionNotFoundError`, :class:`ForbiddenError`.

Writes that are not git commits (bucket files) use the steps they need: :func:`store_changes`, :func:`admit` (with
``revision=None``: the scan gate without a license policy on a tree) and :func:`settle`'s ingest.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from openckpt.digest import git_blob_sha1, lfs_pointer
from openckpt.errors import BadRequestError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Discussion, DiscussionEvent, Repo
from openckpt.hub.services import compression as storage_compression
from openckpt.hub.services import deltas, gate, governance, possession, provenance, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.blob_bytes import GITATTRIBUTES, put_bytes, record_blob
from openckpt.hub.services.commits import FileChange, commit_on, pr_num, ref_kind, retried, squash_on
from openckpt.hub.services.community import discussions
from openckpt.hub.services.names import check_new_path
from openckpt.hub.services.stored_files import raw_blobs
from openckpt.hub.services.webhooks.delivery import Deliveries, RefUpdate, repo_event
from openckpt.hub.services.xet import ingest as xet_ingest
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = [
    "CommitRequest",
    "Committed",
    "FileChange",
    "NewFile",
    "PrCommitted",
    "admit",
    "announce",
    "commit",
    "is_lfs",
    "settle",
    "squash",
    "store_changes",
]

CHUNK = 1 << 20
SAMPLE = 8192
"""Bytes of a file's start that decide whether it is binary (as ``preupload``'s ``sample``)."""
LFS_SUFFIXES = tuple(line.split()[0][1:] for line in GITATTRIBUTES.decode().splitlines())

PrCommitted = Callable[[Session, Discussion, DiscussionEvent], None]
"""Called in a commit's transaction with the pull request it committed to (or opened) and its ``commit`` event."""


@dataclass(frozen=True)
class NewFile:
    """A file whose bytes come with the request: ``content`` (bytes, or a binary file read from its start)."""

    path: str
    content: bytes | BinaryIO
    lfs: bool | None = None
    """Stored as Git LFS; None decides by the rule ``preupload`` answers (:func:`is_lfs`)."""


@dataclass(frozen=True, kw_only=True)
class CommitRequest:
    """A commit to make: ``changes`` by ``principal`` on ``revision`` of repo ``repo_id`` (its primary key), a branch
    or a pull request's ``refs/pr/N``; with ``create_pr``, a pull request onto branch ``revision`` (opened at its
    head, or at ``parent_commit``) holding the commit."""

    principal: Principal
    repo_id: int
    revision: str
    changes: Sequence[FileChange | NewFile]
    title: str
    message: str = ""
    parent_commit: str | None = None
    """The head the caller saw: a head that moved since is a :class:`PreconditionFailedError`."""
    create_pr: bool = False


@dataclass(frozen=True)
class Committed:
    """What a commit did: the commit its ref now names, whether it made it, and the pull request it went to."""

    commit_id: str
    changed: bool
    """False when the commit changed nothing (or repeated a request that had committed): no ref moved."""
    ref: str
    """The ref it moved (or would have): a branch, or ``refs/pr/N``."""
    old: str | None
    """The ref's head before (None when it did not move)."""
    pull_request: int | None = None


def is_lfs(path: str, size: int, *, sample: bytes, max_inline: int) -> bool:
    """Whether a file goes through Git LFS: not empty, and larger than ``max_inline``, or named like a binary
    format, or binary (a NUL in ``sample``, its first bytes)."""
    return size > 0 and (size > max_inline or path.endswith(LFS_SUFFIXES) or b"\0" in sample)


# ---- 1. store ---------------------------------------------------------------------------------------------------


def _size(file: NewFile, settings: Settings) -> int:
    if isinstance(file.content, bytes):
        size = len(file.content)
    else:
        file.content.seek(0, 2)
        size = file.content.tell()
        file.content.seek(0)
    if size > settings.max_file_size:
        raise BadRequestError(f"{file.path} is {size} bytes: larger than this hub's limit of {settings.max_file_size}")
    return size


def _put(store: BlobStore, file: NewFile, size: int) -> tuple[str, str, bytes]:
    """Store ``file``'s bytes (streamed: memory stays at one chunk); its sha256, git blob sha1 and first bytes."""
    if isinstance(file.content, bytes):
        return put_bytes(store, file.content), git_blob_sha1(file.content), file.content[:SAMPLE]
    source = file.content
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    writer, sample = store.writer(size), b""
    try:
        while chunk := source.read(CHUNK):
            sample = sample or chunk[:SAMPLE]
            sha256.update(chunk)
            sha1.update(chunk)
            writer.write(chunk)
        digest = writer.commit(sha256.hexdigest(), size)
    except BaseException:
        writer.abort()
        raise
    return digest, sha1.hexdigest(), sample


def store_changes(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    principal: Principal,
    changes: Sequence[FileChange | NewFile],
) -> tuple[list[FileChange], set[str]]:
    """Store the new files of ``changes`` and record their blobs; return the changes, all :class:`FileChange`, and the
    sha256 of the files this request brought. Every change is checked before anything is stored; a copy (an LFS
    change of size -1) gets the size of the object it names, if stored and the caller has it."""
    sizes = {i: _size(c, settings) for i, c in enumerate(changes) if isinstance(c, NewFile)}
    paths = {i: check_new_path(c.path.strip("/")) for i, c in enumerate(changes) if isinstance(c, NewFile)}
    out: list[FileChange] = []
    sent: set[str] = set()
    for i, change in enumerate(changes):
        if isinstance(change, FileChange):
            out.append(change)
            continue
        sha256, sha1, sample = _put(store, change, sizes[i])
        lfs = (
            change.lfs
            if change.lfs is not None
            else is_lfs(paths[i], sizes[i], sample=sample, max_inline=settings.max_inline_bytes)
        )
        oid = git_blob_sha1(lfs_pointer(sha256, sizes[i])) if lfs else sha1
        out.append(FileChange(paths[i], "add", sha256, sizes[i], oid, lfs=lfs))
        sent.add(sha256)
    copies = [c.sha256 for c in out if c.kind == "add" and c.size < 0]
    found: dict[str, int] = {}
    if sent or copies:
        with db.write() if sent else db.read() as session:
            for c in out:
                if c.sha256 in sent:
                    record_blob(session, c.sha256, c.size)
            found = possession.stored_sizes(session, principal, copies) if copies else {}
    for i, c in enumerate(out):
        if c.kind == "add" and c.size < 0:
            if (size := found.get(c.sha256)) is None:
                raise BadRequestError(f"LFS object {c.sha256} to copy to {c.path} is not stored")
            c = out[i] = replace(c, size=size)
        if c.kind == "add" and c.lfs and not c.git_oid:  # an LFS file's git oid is its pointer's
            out[i] = replace(c, git_oid=git_blob_sha1(lfs_pointer(c.sha256, c.size)))
    return out, sent


# ---- 2. scan gate and policy ------------------------------------------------------------------------------------


def admit(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    principal: Principal,
    repo_id: int | None,
    revision: str | None,
    changes: Sequence[FileChange],
    sent: Collection[str] = (),
) -> None:
    """Let ``changes`` on ``revision`` of repo ``repo_id`` through, or raise: the LFS and Xet objects they name (but
    the request did not bring, ``sent``) are stored and the caller's, every added file passes the scan gate, and the
    license policy allows the tree they make. Without ``repo_id`` the hub's scan rules alone apply, and without
    ``revision`` no license policy (a write that makes no tree)."""
    named = {c.sha256: c.size for c in changes if c.kind == "add" and c.lfs and c.sha256 not in sent}
    with tempfile.TemporaryDirectory(prefix="openckpt-commit-") as scratch:  # Xet files: verified and copied at once
        copies = possession.require(db, store, principal, named, copies=Path(scratch))
        gate.check_changes(db, store, settings=settings, changes=changes, copies=copies, repo_id=repo_id)
    if repo_id is not None and revision is not None:
        governance.enforce_policy(db, store, settings=settings, repo_id=repo_id, branch=revision, changes=changes)


# ---- 3. commit --------------------------------------------------------------------------------------------------


def announce(session: Session, events: Deliveries | None, repo: Repo, ref: str, old: str, new: str) -> bool:
    """Write in ``session`` (the transaction moving it) the ``repo.content`` event of branch ``ref`` moving from
    ``old`` to ``new``; whether any was written (none for a pull request's ref, as before)."""
    if events is None or ref_kind(ref) != "branch" or old == new:
        return False
    update = RefUpdate(f"refs/heads/{ref}", old, new)
    events.enqueue(session, repo_event(repo, "update", scope="repo.content", head_sha=new, updated_refs=(update,)))
    return True


def _record_on_pr(
    session: Session, repo: Repo, num: int, commit_id: str, *, title: str, author: str, hook: PrCommitted | None
) -> None:
    d = session.query(Discussion).filter_by(repo_id=repo.id, num=num).one()
    event = discussions.add_event(session, d, "commit", author, title, commit_id)
    if d.status == "draft":
        d.status = "open"
    if hook is not None:
        hook(session, d, event)


def commit(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    request: CommitRequest,
    events: Deliveries | None = None,
    on_pr_commit: PrCommitted | None = None,
) -> Committed:
    """Run the whole flow (module docstring) for ``request``; authorise it first (``pull_requests.find_committable``).
    ``events`` receives the webhook events; ``on_pr_commit`` is called in the transaction that records the commit on
    a pull request."""
    r = request
    files, sent = store_changes(db, store, settings=settings, principal=r.principal, changes=r.changes)
    admit(
        db,
        store,
        settings=settings,
        principal=r.principal,
        repo_id=r.repo_id,
        revision=r.revision,
        changes=files,
        sent=sent,
    )
    title, message, author = r.title, r.message, r.principal.name

    def attempt(session: Session, repo: Repo) -> Committed:
        ref, num, parent = r.revision, pr_num(r.revision), r.parent_commit
        if r.create_pr:  # its ref starts at the target's head (or parentCommit), then the commit moves it
            _, d = discussions.open_discussion(
                session,
                r.principal,
                repo.type,
                f"{repo.owner.name}/{repo.name}",
                title=title[:200],
                description=message,
                pull_request=discussions.PullRequestTarget(r.revision, base=r.parent_commit),
            )
            ref, num, parent = f"refs/pr/{d.num}", d.num, None
        made, changed = commit_on(
            session, repo, ref, files, title=title, message=message, author=author, parent_commit=parent
        )
        if not changed:
            return Committed(made.id, False, ref, None, num)
        assert made.parent_id is not None
        if num is not None:
            _record_on_pr(session, repo, num, made.id, title=title, author=author, hook=on_pr_commit)
        announce(session, events, repo, ref, made.parent_id, made.id)
        return Committed(made.id, True, ref, made.parent_id, num)

    done = retried(db, r.repo_id, attempt)
    if events is not None:
        events.wake()
    settle(db, store, settings=settings, repo_id=r.repo_id, ref=done.ref, commit_id=done.commit_id, changes=files)
    return done


def squash(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    principal: Principal,
    repo_id: int,
    branch: str,
    title: str,
    events: Deliveries | None = None,
) -> Committed:
    """Replace the history of ``branch`` by one commit without parent holding its head's files (``commits.squash_on``);
    authorise first (``pull_requests.find_committable``). Its files passed the gate when they were committed."""

    def attempt(session: Session, repo: Repo) -> Committed:
        made, old = squash_on(session, repo, branch, title=title, author=principal.name)
        announce(session, events, repo, branch, old, made.id)
        return Committed(made.id, True, branch, old)

    done = retried(db, repo_id, attempt)
    if events is not None:
        events.wake()
    settle(db, store, settings=settings, repo_id=repo_id, ref=branch, commit_id=done.commit_id)
    return done


# ---- 4. metadata and ingest -------------------------------------------------------------------------------------


def settle(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    repo_id: int,
    ref: str | None,
    commit_id: str | None,
    changes: Iterable[FileChange] = (),
) -> None:
    """After a commit on ``ref``: on the default branch, refresh the repo's metadata and verify the weights of
    ``commit_id`` against their bases in the background; chunk the whole blobs ``changes`` add into xorbs in the
    background (``OPENCKPT_XET_INGEST``)."""
    if commit_id is not None and repos.is_default_branch(db, repo_id, ref):
        repos.refresh_metadata(db, store, repo_id=repo_id)
        provenance.verify_later(db, store, settings=settings, repo_id=repo_id, commit_id=commit_id)
    ingesting = None
    if settings.xet_ingest:  # whole blobs become xorbs in the background (see xet_ingest)
        added = [c.sha256 for c in changes if c.kind == "add" and c.size >= xet_ingest.MIN_SIZE]
        if added:
            ingesting = xet_ingest.ingest_later(db, store, settings=settings, sha256s=added)
    if settings.compress_at_rest:  # then their xorbs are packed at rest (see storage_compression)
        files = [c.sha256 for c in changes if c.kind == "add" and c.size >= xet_ingest.MIN_SIZE]
        if files:
            packing = storage_compression.compress_later(db, raw_blobs(store), sha256s=files, after=ingesting)
            if settings.deltas_at_rest:  # then derivatives become deltas against their bases (see deltas)
                deltas.encode_later(db, raw_blobs(store), sha256s=files, after=packing)
