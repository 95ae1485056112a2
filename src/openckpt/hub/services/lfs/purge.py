"""The LFS files of a repo's history (``HfApi.list_lfs_files``) and their removal from it by rewriting that history
(``HfApi.permanently_delete_lfs_files``).

Listing: every distinct LFS object (by sha256) in the tree of a commit that a branch or tag reaches, with the path,
date and ref of the oldest such commit. Removal: every reachable commit whose tree holds one of the objects becomes a
commit of that tree without them (same title, message, author and date), every descendant a commit on its new parent
(its tree kept), and the branches and tags move to the rewrites: all in one write transaction whose ref moves are
compare-and-swap, so a concurrent commit makes it run again rather than get lost. The old commits are then
unreachable: garbage collection removes them after its grace period, and the bytes with them unless something else
(another repo: storage is shared by sha256) still names them. Deleting the bytes but keeping the pointers is not
offered: in a shared store the bytes are not one repo's to delete.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Commit, Ref, Repo, utcnow
from openckpt.hub.services import possession
from openckpt.hub.services.commits import move_ref, retried, rewrite_commits
from openckpt.hub.services.repos import DEFAULT_BRANCH
from openckpt.hub.services.tree_writes import rewrite_files
from openckpt.hub.services.trees import first_seen, holders
from openckpt.hub.services.webhooks.delivery import RefUpdate

__all__ = ["LfsFile", "Purge", "lfs_files", "purge"]


@dataclass(frozen=True)
class LfsFile:
    """An LFS object of a repo's history, as the oldest commit holding it names it."""

    sha256: str
    path: str
    size: int
    pushed_at: datetime
    ref: str
    """The full name of a ref reaching that commit (``refs/heads/main``, ``refs/tags/v1``)."""


@dataclass(frozen=True)
class Purge:
    """What a removal changed: the refs it moved and how many commits it rewrote."""

    moved: tuple[RefUpdate, ...]
    rewritten: int


@dataclass(frozen=True)
class _History:
    commits: dict[str, Commit]
    refs: tuple[tuple[str, str, str], ...]
    """(kind, name, commit id) of every ref: the default branch first, then branches, then tags."""
    reached: dict[str, str]
    """Commit id → full name of the first ref (in ``refs`` order) reaching it."""


def _history(session: Session, repo: Repo) -> _History:
    commits = {c.id: c for c in session.scalars(select(Commit).where(Commit.repo_id == repo.id))}
    rows = session.execute(select(Ref.kind, Ref.name, Ref.commit_id).where(Ref.repo_id == repo.id)).tuples().all()
    refs = tuple(sorted(rows, key=lambda r: (r[0] != "branch", r[1] != DEFAULT_BRANCH, r[1])))
    reached: dict[str, str] = {}
    for kind, name, head in refs:
        full = name if kind == "pr" else f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}"  # refs/pr/N
        at: str | None = head
        while at is not None and at in commits and at not in reached:
            reached[at] = full
            at = commits[at].parent_id
    return _History(commits, refs, reached)


def _holding(session: Session, repo: Repo, shas: Collection[str]) -> list[tuple[str, str]]:
    """(root tree, sha256) of the trees of ``repo``'s commits holding LFS files among ``shas``."""
    found = holders(list(shas))
    query = select(found.c.tree_id, found.c.sha256).join(Commit, Commit.tree_id == found.c.tree_id)
    return list(session.execute(query.where(Commit.repo_id == repo.id, found.c.lfs.is_(True)).distinct()).tuples())


def lfs_files(session: Session, repo: Repo) -> list[LfsFile]:
    """Every distinct LFS object of the commits ``repo``'s refs reach, oldest first."""
    history = _history(session, repo)
    first: dict[str, LfsFile] = {}
    commits = sorted((history.commits[c] for c in history.reached), key=lambda c: c.created_at)
    within = select(Commit.tree_id).where(Commit.repo_id == repo.id)
    for commit, files in zip(commits, first_seen(session, [c.tree_id for c in commits], within, lfs=True), strict=True):
        for f in files:
            if f.sha256 not in first:
                first[f.sha256] = LfsFile(f.sha256, f.path, f.size, commit.created_at, history.reached[commit.id])
    return sorted(first.values(), key=lambda f: (f.pushed_at, f.sha256))


def purge(
    db: Database,
    repo_id: int,
    *,
    shas: Collection[str],
    on_purged: Callable[[Session, Repo, Purge], None] | None = None,
) -> Purge:
    """Remove the LFS objects ``shas`` from every commit the refs of repo ``repo_id`` reach, rewriting its history;
    ``on_purged`` runs in the rewrite's transaction (its webhook deliveries are written there).

    A sha256 that no such commit holds is a :class:`BadRequestError` naming it, and nothing changes.
    """
    doomed = frozenset(shas)

    def attempt(session: Session, repo: Repo) -> Purge:
        history = _history(session, repo)
        live_trees = {history.commits[c].tree_id for c in history.reached}
        rows = [row for row in _holding(session, repo, doomed) if row[0] in live_trees]
        holding, found = {row[0] for row in rows}, {row[1] for row in rows}
        if missing := sorted(doomed - found):
            raise BadRequestError(f"no LFS file of {repo.repo_id} has the sha256 {', '.join(missing[:10])}")
        rewritten: dict[str, str] = {}  # trees (roots and folders) → without the files

        def without(tree_id: str) -> str:
            if tree_id not in holding:
                return tree_id
            return rewrite_files(session, tree_id, lambda e: not (e.lfs and e.sha256 in doomed), rewritten)

        mapped = rewrite_commits(session, history.commits, [r[2] for r in history.refs], repo_id=repo.id, tree=without)
        possession.forget_objects(session, repo.id, doomed)  # its readers no longer have them through it
        moved: list[RefUpdate] = []
        for kind, name, old in history.refs:
            if (new := mapped.get(old, old)) != old:
                move_ref(session, repo.id, kind, name, old, new)
                full = name if kind == "pr" else f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}"
                moved.append(RefUpdate(full, old, new))
        repo.last_modified = utcnow()
        done = Purge(tuple(moved), sum(1 for old, new in mapped.items() if old != new))
        if on_purged is not None:
            on_purged(session, repo, done)
        return done

    return retried(db, repo_id, attempt)
