"""One upstream commit made this hub's (``services/mirror/cache.py`` decides when): the local repo and organisation that
hold it, every file downloaded into the store and checked against the upstream's tree, the scan gate and the license
policy, then one transaction adding the trees and the commit at the upstream's id."""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from openckpt.digest import git_blob_sha1, lfs_pointer
from openckpt.errors import PolicyViolationError, UploadMismatchError, UpstreamError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Commit, Membership, Repo
from openckpt.hub.services import commit_flow, gate, governance, possession
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.blob_bytes import record_blob
from openckpt.hub.services.commits import FileChange, retried
from openckpt.hub.services.mirror.live import Fetch, streamable
from openckpt.hub.services.mirror.upstream import Upstream, UpstreamCommit, UpstreamFile
from openckpt.hub.services.tree_writes import files_tree_id, store_files
from openckpt.hub.services.trees import FileEntry
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = ["MIRROR_FULLNAME", "PARALLEL", "Hub", "Target", "commit_files", "find", "is_local_account", "mirror_repo"]

PARALLEL = 4
"""Files of a revision downloaded at once (and as many streamable ones beside them)."""
BEHIND_FROM = 16 << 20
"""Files from this size are hashed and written in a thread of their own while the next bytes are received."""
AHEAD = 4
"""Chunks received ahead of the one being hashed and written (4 MiB each: ``upstream.CHUNK``)."""
MIRROR_FULLNAME = "{} (mirrored)"
"""The full name of the organisations the mirror makes for upstream namespaces: what tells them from local ones."""


class Hub(Protocol):
    """The hub's parts the mirror uses (``openckpt.hub.context.Hub``)."""

    settings: Settings
    db: Database
    store: BlobStore


def find(session: Session, repo_type: str, repo_id: str) -> tuple[Account | None, Repo | None]:
    owner, _, name = repo_id.partition("/")
    account = session.scalar(select(Account).where(Account.name == owner))
    if account is None:
        return None, None
    repo = session.scalar(select(Repo).where(Repo.type == repo_type, Repo.owner_id == account.id, Repo.name == name))
    return account, repo


def is_local_account(session: Session, account: Account) -> bool:
    """Whether ``account`` is this hub's own: any but an organisation the mirror made (:data:`MIRROR_FULLNAME`)
    that nobody joined since."""
    if account.kind != "org" or account.fullname != MIRROR_FULLNAME.format(account.name):
        return True
    return session.scalar(select(Membership.user_id).where(Membership.org_id == account.id).limit(1)) is not None


@dataclass(frozen=True)
class Target:
    """The local repo a mirror fills."""

    id: int
    type: str
    owner_id: int
    owner: str


def mirror_repo(hub: Hub, repo_type: str, repo_id: str, *, restricted: bool) -> Target:
    """The local repo mirroring ``repo_id``, created (with its organisation) on first use; never a local one. A
    ``restricted`` one (only a user's own token reaches it upstream) is gated."""
    owner, _, name = repo_id.partition("/")
    for attempt in range(3):
        try:
            with hub.db.write() as session:
                account, repo = find(session, repo_type, repo_id)
                if account is not None and is_local_account(session, account):
                    raise UpstreamError(f"{owner} is a namespace of this hub: its repos are not mirrored")
                if account is None:
                    account = Account(name=owner, kind="org", fullname=MIRROR_FULLNAME.format(owner))
                    session.add(account)
                    session.flush()
                if repo is None:
                    repo = Repo(type=repo_type, owner_id=account.id, name=name, private=False, owner=account)
                    session.add(repo)
                    session.flush()
                if restricted and not repo.gated:
                    repo.gated = "manual"
                return Target(repo.id, repo_type, account.id, account.name)
        except SQLIntegrityError:  # another server created it meanwhile: look again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _principal(repo: Target) -> Principal:
    """Who the mirror commits as: the mirrored repo's organisation."""
    return Principal(repo.owner_id, repo.owner, "", False, "write", "mirror")


def commit_files(
    hub: Hub, upstream: Upstream, repo: Target, repo_id: str, found: UpstreamCommit, *, live: Fetch | None = None
) -> None:
    """Download every file of ``found``, pass them through the gate and the policy, and add the commit. With
    ``live``, readers follow the files that may stream before the verdict (``services/mirror/live.py``)."""
    files = upstream.files(repo.type, repo_id, found.sha)
    if live is not None and not _no_policy(hub, repo):
        live = None
    changes = _download_all(hub, upstream, repo, repo_id, found, files, live=live)
    with hub.db.write() as session:
        for c in changes:
            record_blob(session, c.sha256, c.size)
    commit_flow.admit(
        hub.db,
        hub.store,
        settings=hub.settings,
        principal=_principal(repo),
        repo_id=repo.id,
        revision=None,  # the license policy is checked below, on the whole tree (there is no local base)
        changes=changes,
        sent={c.sha256 for c in changes},
    )
    entries = {c.path: FileEntry(c.path, c.sha256, c.git_oid, c.size, c.lfs) for c in changes}
    with hub.db.read() as session:
        owned = session.get(Repo, repo.id)
        assert owned is not None
        refused = governance.policy_refusal(
            session, hub.store, hub.settings, owned, entries, files_tree_id(entries.values())
        )
    if refused is not None:
        raise PolicyViolationError(f"the license policy of {refused[0]} refuses {repo_id}@{found.sha}: {refused[1]}")
    if live is not None:
        live.release()

    def attempt(session: Session, row: Repo) -> None:
        possession.index_objects(session, row.id, [c.sha256 for c in changes if c.lfs])
        tree_id = store_files(session, entries.values())
        parent = session.get(Commit, found.parent) if found.parent is not None else None
        commit = Commit(
            id=found.sha,
            repo_id=row.id,
            parent_id=found.parent if parent is None or parent.repo_id == row.id else None,  # not another repo's
            tree_id=tree_id,
            title=found.title,
            message=f"Mirrored from {upstream.url}/{repo_id}",
            author=found.author or row.owner.name,
        )
        commit.created_at = _date(found.date)
        session.add(commit)
        row.last_modified = commit.created_at

    retried(hub.db, repo.id, attempt)


def _date(text: str | None) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC).replace(tzinfo=None)
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _download_all(
    hub: Hub,
    upstream: Upstream,
    repo: Target,
    repo_id: str,
    found: UpstreamCommit,
    files: list[UpstreamFile],
    *,
    live: Fetch | None,
) -> list[FileChange]:
    """Download ``files``, :data:`PARALLEL` at a time and the streamable ones (with ``live``) alongside; those are
    followable from their first byte, offered to readers once every other file has arrived and passed the scan gate.
    A failure abandons the downloads still running."""
    late = [f for f in files if live is not None and streamable(f.path, f.sha256, f.size)]
    held = [f for f in files if f not in late]
    if live is not None and late:
        live.prepare(found.sha, [(f.path, f.size, f.sha256 or "") for f in late])
    stop = threading.Event()
    get = partial(_download, hub, upstream, repo, repo_id, found.sha, stop=stop)
    with (
        ThreadPoolExecutor(PARALLEL, thread_name_prefix="openckpt-mirror-get") as small,
        ThreadPoolExecutor(PARALLEL, thread_name_prefix="openckpt-mirror-stream") as large,
    ):
        try:
            later = [large.submit(get, f, live=live) for f in late]
            changes = [f.result() for f in [small.submit(get, f) for f in held]]
            if live is not None and later:
                gate.check_changes(hub.db, hub.store, settings=hub.settings, changes=changes, repo_id=repo.id)
                live.offer()
            return changes + [f.result() for f in later]
        except BaseException:
            stop.set()
            raise


class _Behind:
    """Hands each chunk to ``consume`` in a thread of its own, in order, :data:`AHEAD` at most in flight: the next
    chunk is received while this one is hashed and written (hashing and writes release the GIL). Leaving the block
    waits for every chunk handed over and raises what ``consume`` raised. Not ``threaded``: each runs at once."""

    def __init__(self, consume: Callable[[bytes], None], *, threaded: bool) -> None:
        self.consume = consume
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="openckpt-mirror-write") if threaded else None
        self.pending: deque[Future[None]] = deque()

    def put(self, chunk: bytes) -> None:
        if self.pool is None:
            self.consume(chunk)
            return
        while len(self.pending) >= AHEAD:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self.consume, chunk))

    def __enter__(self) -> _Behind:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)  # nothing writes once the caller goes on (to commit or abort)


def _no_policy(hub: Hub, repo: Target) -> bool:
    """Whether no license policy applies to ``repo`` (then its files may stream before the verdict)."""
    with hub.db.read() as session:
        row = session.get(Repo, repo.id)
        if row is None or row.gated:
            return False
        return row.type != "model" or governance.effective_policy(session, hub.settings, row).empty


def _download(
    hub: Hub,
    upstream: Upstream,
    repo: Target,
    repo_id: str,
    sha: str,
    file: UpstreamFile,
    *,
    live: Fetch | None = None,
    stop: threading.Event | None = None,
) -> FileChange:
    """Stream one upstream file into the store (readers following it with ``live``), checking it is the file the
    upstream's tree names (the store hashes it; a regular file's git blob id is checked here)."""
    lfs = file.sha256 is not None
    sha1 = None if lfs else hashlib.sha1(b"blob %d\0" % file.size, usedforsecurity=False)
    size = 0
    writer = hub.store.writer(file.size)
    sink = live.sink(file.path, writer) if live is not None else None

    def consume(chunk: bytes) -> None:
        if sha1 is not None:
            sha1.update(chunk)
        writer.write(chunk)  # the store hashes it (sha256)
        if sink is not None:
            sink(chunk)

    try:
        with (
            _Behind(consume, threaded=file.size >= BEHIND_FROM) as behind,
            upstream.download(repo.type, repo_id, sha, file.path, size=file.size) as chunks,
        ):
            for chunk in chunks:
                if stop is not None and stop.is_set():
                    raise UpstreamError(f"the fetch of {repo_id}@{sha} was abandoned")
                size += len(chunk)
                if size > file.size:
                    break
                behind.put(chunk)
        if size != file.size or (sha1 is not None and sha1.hexdigest() != file.oid):
            raise UpstreamError(f"the upstream {upstream.url} sent other bytes for {file.path} than its tree names")
        try:
            digest = writer.commit(file.sha256, size)
        except UploadMismatchError as e:
            raise UpstreamError(f"the upstream {upstream.url} sent other bytes for {file.path}: {e}") from e
    except BaseException:
        writer.abort()
        raise
    oid = git_blob_sha1(lfs_pointer(digest, size)) if sha1 is None else sha1.hexdigest()
    return FileChange(file.path, "add", digest, size, oid, lfs=lfs)
