"""The hub as a pull-through cache of other hubs (``OPENCKPT_UPSTREAM``): :func:`ensure` before a read.

A read of a repo this hub does not hold is answered from the upstreams, asked in order: the commit the asked revision
names there is fetched (its file list, then every file's bytes, verified against the upstream's sha256 or git blob
id), the files pass the scan gate and the license policy of this hub (``commit_flow.admit``), and one transaction
adds the trees and a commit **whose id is the upstream's**, so clients see the upstream's commit ids and their caches
work as against the upstream. Bytes go to the shared store (deduplicated with everything else) and are chunked into
Xet xorbs afterwards (``commit_flow.settle``), as after any commit.

A mirrored repo's state lives in refs of kind ``mirror`` (kept by garbage collection like every ref, listed by no
API): one per revision asked (``main``, a tag, a commit id), naming the upstream's commit, its message the upstream's
URL and when it was last checked (JSON). A branch or tag revision also moves a branch of that name, which the repo's
listings show. Commit ids are served for ever; names are checked against the upstream again after
``OPENCKPT_UPSTREAM_TTL`` seconds, and while the upstream is down the cached commit is served (a revision never
fetched fails with :class:`UpstreamError`, 502, or :class:`UpstreamTimeoutError`, 504).

Names: a repo created on this hub wins over an upstream one of the same name, and so does every repo of a local
namespace: the mirror only creates repos in organisations it created (full name ``<name> (mirrored)``, no members).
``OPENCKPT_UPSTREAM_NAMESPACES`` limits which upstream namespaces are mirrored. One fetch of a revision runs at a time
per hub data directory (a file lock): concurrent readers of an uncached revision wait for it, then read the cache,
except readers of a file that may stream before its revision's verdict, who follow the fetch (:func:`background`,
``services/mirror/live.py``).
A revision no upstream has, or one the gate refused, is answered again from memory (per process) for
:data:`MISS_TTL` seconds without asking the upstream; a caller with an upstream token of their own always asks.
How a fetched commit becomes this hub's is ``services/mirror/fetch.py``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from openckpt.errors import GatedRepoError, HubError, PolicyViolationError, UnsafeUploadError, UpstreamError
from openckpt.hub.db.models import AccessRequest, Account, Commit, Ref, Repo
from openckpt.hub.services import commit_flow
from openckpt.hub.services.commits import retried
from openckpt.hub.services.mirror import live as following
from openckpt.hub.services.mirror.fetch import Hub, commit_files, find, is_local_account, mirror_repo
from openckpt.hub.services.mirror.live import Fetch
from openckpt.hub.services.mirror.upstream import Upstream, UpstreamCommit, UpstreamDeniedError

__all__ = ["Caller", "MirrorState", "background", "ensure", "evict", "listing", "mirrored", "refresh"]

MIRROR = "mirror"
"""The kind of the refs that hold a mirrored repo's state."""
MISS_TTL = 60
"""Seconds a revision no upstream has (for the hub's token), or one the gate refused, is answered from memory."""
MAX_MISSES = 10_000
_MISSES: dict[tuple[str, str, str], tuple[float, HubError | None]] = {}
_MISSES_LOCK = threading.Lock()
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class MirrorState:
    """A revision of a mirrored repo: the upstream commit it names, where from, and when it was last checked."""

    revision: str
    commit_id: str
    upstream: str
    checked: float
    restricted: bool = False
    """Reached only with a user's own upstream token: gated here (see :func:`ensure`)."""


def _state(ref: Ref) -> MirrorState:
    meta = json.loads(ref.message or "{}")
    upstream, checked, restricted = (
        str(meta.get("upstream", "")),
        float(meta.get("checked", 0)),
        bool(meta.get("restricted")),
    )
    return MirrorState(ref.name, ref.commit_id, upstream, checked, restricted)


def mirrored(session: Session, repo_id: int) -> list[MirrorState]:
    """The mirrored revisions of repo ``repo_id`` (empty: a local repo)."""
    refs = session.scalars(select(Ref).where(Ref.repo_id == repo_id, Ref.kind == MIRROR).order_by(Ref.name))
    return [_state(r) for r in refs]


def listing(session: Session) -> list[tuple[str, str, list[MirrorState]]]:
    """Every mirrored repo: (type, id, its mirrored revisions), by type and id."""
    refs = session.execute(
        select(Repo.type, Account.name, Repo.name, Ref)
        .join(Account, Repo.owner_id == Account.id)
        .join(Ref, Ref.repo_id == Repo.id)
        .where(Ref.kind == MIRROR)
        .order_by(Repo.type, Account.name, Repo.name, Ref.name)
    ).tuples()
    out: dict[tuple[str, str], list[MirrorState]] = {}
    for repo_type, owner, name, ref in refs:
        out.setdefault((repo_type, f"{owner}/{name}"), []).append(_state(ref))
    return [(t, i, states) for (t, i), states in out.items()]


def _fresh(hub: Hub, session: Session, repo: Repo, revision: str) -> MirrorState | None:
    """The cached state of ``revision`` when it needs no check against the upstream, else None."""
    ref = session.get(Ref, (repo.id, MIRROR, revision))
    if ref is None:
        if _SHA.fullmatch(revision):
            commit = session.get(Commit, revision)
            if commit is not None and commit.repo_id == repo.id:  # a commit id is served for ever
                return MirrorState(revision, revision, "", time.time())
        return None
    state = _state(ref)
    if _SHA.fullmatch(revision) or time.time() - state.checked < hub.settings.upstream_ttl:
        return state
    return None


def _allowed(hub: Hub, owner: str) -> bool:
    names = [n.strip() for n in hub.settings.upstream_namespaces.split(",") if n.strip()]
    return not names or owner in names


@dataclass(frozen=True)
class Caller:
    """Who reads: an account, and its own upstream token (``services/mirror/tokens.py``), if it set one."""

    account_id: int
    token: str | None


def ensure(
    hub: Hub, repo_type: str, repo_id: str, revision: str, *, caller: Caller | None = None, live: Fetch | None = None
) -> None:
    """Make ``revision`` of ``repo_type`` repo ``repo_id`` readable from this hub when an upstream has it and this hub
    does not (module docstring); a no-op for local repos, fresh cached revisions, and repos no upstream has.

    The hub-wide upstream token is sent first; then the caller's own, and what only that reaches is a restricted
    mirror: gated here, its files readable by the accounts whose own token reaches it upstream (each proves it once).
    With ``live`` (:func:`follow`), readers follow the files that may stream before the verdict.
    """
    if not hub.settings.upstreams() or "/" not in repo_id or not _allowed(hub, repo_id.split("/", 1)[0]):
        return
    own = caller is not None and bool(caller.token)
    key = (repo_type, repo_id, revision)
    if not own:
        _recent_miss(key)
    if _needs_fetch(hub, repo_type, repo_id, revision):
        with _fetch_lock(hub, repo_type, repo_id, revision):
            if _needs_fetch(hub, repo_type, repo_id, revision):  # another reader may have fetched it meanwhile
                try:
                    found = _fetch(hub, repo_type, repo_id, revision, caller=caller, live=live)
                except (UnsafeUploadError, PolicyViolationError) as e:
                    if not own:
                        _miss(key, min(hub.settings.upstream_ttl, MISS_TTL), e)
                    raise
                if found is None and not own:
                    _miss(key, min(hub.settings.upstream_ttl, MISS_TTL), None)
    if caller is not None and caller.token:
        _grant_if_upstream_does(hub, repo_type, repo_id, revision, caller)


def background(hub: Hub, repo_type: str, repo_id: str, revision: str) -> Fetch | None:
    """For a reader without an upstream token of its own: when ``revision`` must be fetched, its fetch running in the
    background in this process (started now or joined), which readers may follow (``services/mirror/live.py``);
    None when there is nothing to fetch. Raises a miss or refusal remembered (:data:`MISS_TTL`)."""
    if not hub.settings.upstreams() or "/" not in repo_id or not _allowed(hub, repo_id.split("/", 1)[0]):
        return None
    _recent_miss((repo_type, repo_id, revision))
    if not _needs_fetch(hub, repo_type, repo_id, revision):
        return None
    key = (str(hub.settings.data_dir), repo_type, repo_id, revision)
    spool = hub.settings.data_dir / "mirror-spool"
    return following.follow(key, spool, lambda job: ensure(hub, repo_type, repo_id, revision, live=job))


def _recent_miss(key: tuple[str, str, str]) -> None:
    """Answer again, without asking the upstream, a revision it lacked or the gate refused moments ago."""
    with _MISSES_LOCK:
        found = _MISSES.get(key)
    if found is None or found[0] < time.monotonic():
        return
    if found[1] is not None:
        raise found[1]
    return


def _miss(key: tuple[str, str, str], ttl: float, error: HubError | None) -> None:
    with _MISSES_LOCK:
        if len(_MISSES) >= MAX_MISSES:
            _MISSES.clear()
        _MISSES[key] = (time.monotonic() + ttl, error)


def _grant_if_upstream_does(hub: Hub, repo_type: str, repo_id: str, revision: str, caller: Caller) -> None:
    """Let ``caller`` read a restricted mirror once its own token reaches the repo upstream."""
    with hub.db.read() as session:
        _, repo = find(session, repo_type, repo_id)
        if repo is None or not any(s.restricted for s in mirrored(session, repo.id)):
            return
        granted = session.scalar(
            select(AccessRequest.status).where(
                AccessRequest.repo_id == repo.id, AccessRequest.user_id == caller.account_id
            )
        )
        repo_pk = repo.id
    if granted == "accepted":
        return
    for url in hub.settings.upstreams():
        upstream = Upstream(url, caller.token)
        try:
            if upstream.commit(repo_type, repo_id, revision) is not None:
                _grant(hub, repo_pk, caller.account_id)
                return
        except UpstreamError:
            continue
        finally:
            upstream.close()


def _grant(hub: Hub, repo_id: int, account_id: int) -> None:
    with hub.db.write() as session:
        row = session.scalar(
            select(AccessRequest).where(AccessRequest.repo_id == repo_id, AccessRequest.user_id == account_id)
        )
        if row is None:
            session.add(AccessRequest(repo_id=repo_id, user_id=account_id, status="accepted", fields={}))
        else:
            row.status = "accepted"


def refresh(hub: Hub, repo_type: str, repo_id: str, revision: str) -> MirrorState | None:
    """Check ``revision`` against the upstreams now (fetching a new commit); its state after, None if not mirrored."""
    with _fetch_lock(hub, repo_type, repo_id, revision):
        with hub.db.read() as session:
            account, repo = find(session, repo_type, repo_id)
            if (account is not None and is_local_account(session, account)) or (
                repo is not None and not _is_mirror_repo(session, repo)
            ):
                return None
        return _fetch(hub, repo_type, repo_id, revision)


def evict(hub: Hub, repo_type: str, repo_id: str) -> bool:
    """Delete the mirrored repo ``repo_id`` (its bytes go at the next garbage collection); False if not mirrored."""
    with hub.db.write() as session:
        _, repo = find(session, repo_type, repo_id)
        if repo is None or not mirrored(session, repo.id):
            return False
        for table in (Ref, Commit):  # as services/repos.delete_repo: the commit ids may come back with a new fetch
            session.execute(delete(table).where(table.repo_id == repo.id))
        session.delete(repo)
    return True


def _needs_fetch(hub: Hub, repo_type: str, repo_id: str, revision: str) -> bool:
    with hub.db.read() as session:
        account, repo = find(session, repo_type, repo_id)
        if repo is None:
            return account is None or not is_local_account(session, account)
        if not _is_mirror_repo(session, repo):
            return False  # a local repo wins
        return _fresh(hub, session, repo, revision) is None


def _is_mirror_repo(session: Session, repo: Repo) -> bool:
    """Whether ``repo`` (of an organisation the mirror made) is the mirror's: it has mirrored revisions, or no commit
    at all (a first fetch that failed: retried). A repo made here has its initial commit: local, it wins."""
    if mirrored(session, repo.id):
        return True
    return session.scalar(select(Commit.id).where(Commit.repo_id == repo.id).limit(1)) is None


@contextmanager
def _fetch_lock(hub: Hub, repo_type: str, repo_id: str, revision: str) -> Iterator[None]:
    """Hold the lock of one revision's fetch, shared by every process of this hub's data directory."""
    folder = hub.settings.data_dir / "mirror-locks"
    folder.mkdir(mode=0o700, exist_ok=True)
    key = hashlib.sha256(f"{repo_type}\0{repo_id}\0{revision}".encode()).hexdigest()[:32]
    fd = os.open(folder / key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fetch(
    hub: Hub, repo_type: str, repo_id: str, revision: str, *, caller: Caller | None = None, live: Fetch | None = None
) -> MirrorState | None:
    """Ask each upstream in order for ``revision`` (with the hub's token, then the caller's own); fetch and commit
    what the first that has it names."""
    failure: UpstreamError | None = None
    denied: UpstreamDeniedError | None = None
    tokens: list[tuple[str | None, Caller | None]] = [(hub.settings.upstream_credential(), None)]
    if caller is not None and caller.token:
        tokens.append((caller.token, caller))
    for url in hub.settings.upstreams():
        for token, owner in tokens:
            upstream = Upstream(url, token)
            try:
                found = upstream.commit(repo_type, repo_id, revision)
                if found is not None:
                    follow = live if owner is None else None  # what only a user's own token reaches never streams
                    return _mirror(
                        hub, upstream, repo_type, repo_id, revision, found, restricted_for=owner, live=follow
                    )
            except UpstreamDeniedError as e:  # gated upstream: its files need a token with access, maybe the caller's
                denied = e
            except UpstreamError as e:
                failure = failure or e
                break  # this upstream is down: the next one
            finally:
                upstream.close()
    with hub.db.read() as session:
        _, repo = find(session, repo_type, repo_id)
        stale = session.get(Ref, (repo.id, MIRROR, revision)) if repo is not None else None
    if stale is not None:  # the upstream is down: the cached commit is served until it answers again
        return _state(stale)
    if denied is not None:
        raise GatedRepoError(
            f"{repo_id} is gated upstream ({denied}): set an upstream token of your own that has access to it "
            "(PUT /api/settings/upstream-token)"
        )
    if failure is not None:
        raise failure
    return None


def _mirror(
    hub: Hub,
    upstream: Upstream,
    repo_type: str,
    repo_id: str,
    revision: str,
    found: UpstreamCommit,
    *,
    restricted_for: Caller | None = None,
    live: Fetch | None = None,
) -> MirrorState:
    """Make commit ``found`` of the upstream repo this hub's, unless it already is; name it ``revision``. Found with
    the token of ``restricted_for`` only: the repo is gated here, and that caller may read it."""
    repo = mirror_repo(hub, repo_type, repo_id, restricted=restricted_for is not None)
    with hub.db.read() as session:
        have = session.get(Commit, found.sha)
        if have is not None and have.repo_id != repo.id:
            raise UpstreamError(f"commit {found.sha} of the upstream {repo_id} is another repo's commit on this hub")
        restricted = restricted_for is not None or any(m.restricted for m in mirrored(session, repo.id))
    if have is None:
        commit_files(hub, upstream, repo, repo_id, found, live=None if restricted else live)
    state = MirrorState(revision, found.sha, upstream.url, time.time(), restricted)  # restricted stays so

    def attempt(session: Session, repo: Repo) -> None:
        meta = json.dumps({"upstream": upstream.url, "checked": state.checked, "restricted": state.restricted})
        _put_ref(session, repo.id, MIRROR, revision, found.sha, meta)
        if not _SHA.fullmatch(revision) and not revision.startswith("refs/"):  # a pull request's stays a mirror ref
            _put_ref(session, repo.id, "branch", revision, found.sha, None)

    retried(hub.db, repo.id, attempt)
    if restricted_for is not None:
        _grant(hub, repo.id, restricted_for.account_id)
    if have is None:
        commit_flow.settle(hub.db, hub.store, settings=hub.settings, repo_id=repo.id, ref=revision, commit_id=found.sha)
    return state


def _put_ref(session: Session, repo_id: int, kind: str, name: str, commit_id: str, message: str | None) -> None:
    ref = session.get(Ref, (repo_id, kind, name))
    if ref is None:
        session.add(Ref(repo_id=repo_id, kind=kind, name=name, commit_id=commit_id, message=message))
    else:
        ref.commit_id, ref.message = commit_id, message
