"""Revisions, trees and commits: how a repo's files change, atomically.

A commit names a root tree (``services/trees.py``: directories are content-addressed, so unchanged ones are shared).
A branch moves by compare-and-swap on its ref row inside one transaction with the new commit and the trees it adds,
so a commit is visible completely or not at all, and concurrent commits never lose one another. A squash moves a
branch the same way, to one commit without parent holding its head's tree; :func:`rewrite_commits` maps a whole
history onto new trees (or into another repo).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Integer, bindparam, literal_column, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased

from openckpt.errors import (
    BadRequestError,
    HubError,
    PreconditionFailedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob, Commit, Ref, Repo, utcnow
from openckpt.hub.services import possession
from openckpt.hub.services.stored_files import xet_files
from openckpt.hub.services.tree_writes import FileChange, write_tree

__all__ = [
    "FileChange",
    "branch_head",
    "commit_chain",
    "commit_on",
    "create_commit",
    "move_ref",
    "new_commit",
    "pr_num",
    "ref_kind",
    "resolve_revision",
    "retried",
    "rewrite_commits",
    "squash_history",
    "squash_on",
]

MAX_ATTEMPTS = 20
MAX_CHAIN = 2**31 - 1
"""Longer than any chain, and small enough for every database to bind: the cap of ``commit_chain``'s limit."""
T = TypeVar("T")


_COMMIT_BY_REF = (
    select(Commit)
    .join(Ref, Ref.commit_id == Commit.id)
    .where(Ref.repo_id == bindparam("repo"), Ref.name == bindparam("rev"))
    .order_by(Ref.kind)  # a branch before a tag of the same name
    .limit(1)
)


def resolve_revision(session: Session, repo: Repo, *, rev: str) -> Commit:
    """A full commit id, a branch or a tag of ``repo``, in this order: a ref named like a commit id (refused since,
    but older hubs allowed it) never hides that commit."""
    if len(rev) == 40:
        commit = session.get(Commit, rev.lower())
        if commit is not None and commit.repo_id == repo.id:
            return commit
    commit = session.scalars(_COMMIT_BY_REF, {"repo": repo.id, "rev": rev}).first()
    if commit is not None:
        return commit
    raise RevisionNotFoundError(f"Invalid rev id: {rev}")


def commit_chain(session: Session, head: Commit, *, limit: int) -> list[Commit]:
    """``head`` and its first-parent ancestors in its repo, newest first: at most ``limit`` commits, in one query."""
    limit = min(limit, MAX_CHAIN)
    if limit <= 0:
        return []
    one = literal_column("1", Integer)
    chain = (
        select(Commit.id, Commit.parent_id, one.label("depth")).where(Commit.id == head.id).cte("chain", recursive=True)
    )
    parent = aliased(Commit)
    chain = chain.union_all(
        select(parent.id, parent.parent_id, (chain.c.depth + one).label("depth"))
        .join(chain, parent.id == chain.c.parent_id)
        .where(parent.repo_id == head.repo_id, chain.c.depth < limit)
    )
    return list(session.scalars(select(Commit).join(chain, Commit.id == chain.c.id).order_by(chain.c.depth)))


def _commit_id(repo: int, parent: str | None, tree: str, author: str, title: str, message: str, at: datetime) -> str:
    text = f"repo {repo}\ntree {tree}\nparent {parent or ''}\nauthor {author} {at.isoformat()}\n\n{title}\n\n{message}"
    return hashlib.sha1(f"commit {len(text.encode())}\0{text}".encode(), usedforsecurity=False).hexdigest()


def new_commit(
    session: Session, repo: Repo, parent: Commit | None, tree_id: str, *, title: str, message: str, author: str
) -> Commit:
    """Add to ``session`` a commit of ``repo`` holding tree ``tree_id`` on ``parent``, made now; no ref moves."""
    now = utcnow()
    parent_id = parent.id if parent is not None else None
    commit = Commit(
        id=_commit_id(repo.id, parent_id, tree_id, author, title, message, now),
        repo_id=repo.id,
        parent_id=parent_id,
        tree_id=tree_id,
        title=title,
        message=message,
        author=author,
        created_at=now,
    )
    session.add(commit)
    return commit


def rewrite_commits(
    session: Session,
    commits: Mapping[str, Commit],
    heads: Iterable[str],
    *,
    repo_id: int,
    tree: Callable[[str], str] = str,
) -> dict[str, str]:
    """Rewrite into repo ``repo_id`` the commits of ``commits`` that ``heads`` reach; return old id → new id.

    Each rewritten commit holds ``tree`` of its tree, has its parent's rewrite as parent and keeps its title, message,
    author and date; parents are rewritten first. A commit of ``repo_id`` whose tree and parent stay is kept as it
    is, and a rewrite already in ``commits`` is not added again. A head not in ``commits`` is left out.
    """
    mapped: dict[str, str] = {}
    for head in heads:
        chain: list[Commit] = []
        at: str | None = head
        while at is not None and at in commits and at not in mapped:
            chain.append(commits[at])
            at = commits[at].parent_id
        for c in reversed(chain):  # oldest first, so that each parent is mapped before its child
            parent = mapped.get(c.parent_id) if c.parent_id is not None else None
            tree_id = tree(c.tree_id)
            if c.repo_id == repo_id and parent == c.parent_id and tree_id == c.tree_id:
                mapped[c.id] = c.id
                continue
            new_id = _commit_id(repo_id, parent, tree_id, c.author, c.title, c.message, c.created_at)
            if new_id not in commits:
                session.add(
                    Commit(
                        id=new_id,
                        repo_id=repo_id,
                        parent_id=parent,
                        tree_id=tree_id,
                        title=c.title,
                        message=c.message,
                        author=c.author,
                        created_at=c.created_at,
                    )
                )
            mapped[c.id] = new_id
    return mapped


def _made_by_earlier_attempt(
    session: Session, head: Commit, parent_commit: str, changes: Sequence[FileChange], *, title: str, author: str
) -> bool:
    """Whether ``head`` is exactly the commit of ``changes`` on ``parent_commit``, by the same author and title."""
    if head.parent_id != parent_commit or head.title != title or head.author != author:
        return False
    parent = session.get(Commit, parent_commit)
    try:
        return parent is not None and write_tree(session, parent.tree_id, changes, store=False) == head.tree_id
    except HubError:
        return False


def commit_on(
    session: Session,
    repo: Repo,
    branch: str,
    changes: Sequence[FileChange],
    *,
    title: str,
    message: str = "",
    author: str,
    parent_commit: str | None = None,
) -> tuple[Commit, bool]:
    """One attempt, in ``session``, to commit ``changes`` on ``branch`` (or a pull request's ``refs/pr/N``) by
    compare-and-swap; return the commit and whether the tree changed (else the head is returned). Run it inside
    :func:`retried`: a head that moved meanwhile makes the attempt run again, unless ``parent_commit`` names the head
    the caller saw (then it is a :class:`PreconditionFailedError`)."""
    head = branch_head(session, repo, branch)
    if parent_commit is not None and parent_commit != head.id:
        if _made_by_earlier_attempt(session, head, parent_commit, changes, title=title, author=author):
            return head, False  # a retried request whose first attempt did commit
        raise PreconditionFailedError(
            f"parentCommit {parent_commit} is not the head of {branch!r} any more: a commit has happened since, and "
            f"{branch!r} is now at {head.id}. Fetch the new head, then commit again."
        )
    lfs = {c.sha256: c.size for c in changes if c.kind == "add" and c.lfs}
    if lfs:
        stored = dict(session.execute(select(Blob.sha256, Blob.size).where(Blob.sha256.in_(lfs))).tuples().all())
        for oid, (_, size) in xet_files(session, [o for o in lfs if o not in stored]).items():
            stored[oid] = size  # uploaded by Xet, its sha256 verified: stored as xorbs
        for oid, size in lfs.items():
            if stored.get(oid) != size:
                raise BadRequestError(f"LFS object {oid} ({size} bytes) has not been uploaded")
        possession.index_objects(session, repo.id, lfs)  # the repo's readers have them from now on
    tree_id = write_tree(session, head.tree_id, changes)  # stores only the trees on the changed paths
    if tree_id == head.tree_id and changes:
        return head, False  # nothing changes: a retried request gets the commit it already made
    commit = new_commit(session, repo, head, tree_id, title=title, message=message, author=author)
    move_ref(session, repo.id, ref_kind(branch), branch, head.id, commit.id)
    repo.last_modified = commit.created_at
    return commit, True


def squash_on(session: Session, repo: Repo, branch: str, *, title: str, author: str) -> tuple[Commit, str]:
    """One attempt, in ``session``, to replace the history of ``branch`` by one commit without parent holding its
    head's tree (compare-and-swap, inside :func:`retried`); return the commit and the old head's id."""
    head = branch_head(session, repo, branch)
    commit = new_commit(session, repo, None, head.tree_id, title=title, message="", author=author)
    move_ref(session, repo.id, ref_kind(branch), branch, head.id, commit.id)
    repo.last_modified = commit.created_at
    return commit, head.id


def branch_head(session: Session, repo: Repo, branch: str) -> Commit:
    """The head commit of ``branch`` (or of a pull request's ``refs/pr/N``); a tag or a commit id is a
    :class:`BadRequestError`."""
    ref = session.get(Ref, (repo.id, ref_kind(branch), branch))
    if ref is None:
        if session.get(Ref, (repo.id, "tag", branch)) is not None or len(branch) == 40:
            raise BadRequestError(f"{branch!r} is not a branch: commits can only be made on top of a branch")
        raise RevisionNotFoundError(f"Invalid rev id: {branch}")
    head = session.get(Commit, ref.commit_id)
    assert head is not None
    return head


def ref_kind(name: str) -> str:
    """The kind of the ref a commit moves: ``pr`` for a pull request's ``refs/pr/N``, else ``branch``."""
    return "pr" if name.startswith("refs/pr/") else "branch"


def pr_num(ref: str) -> int | None:
    """N of ``refs/pr/N``, else None."""
    head, _, num = ref.partition("refs/pr/")
    return int(num) if not head and num.isdigit() else None


def move_ref(session: Session, repo_id: int, kind: str, name: str, old: str, new: str) -> None:
    """Move a branch or tag from commit ``old`` to ``new`` by compare-and-swap: inside :func:`retried`, a ref that
    moved meanwhile makes the whole attempt run again."""
    moved = session.execute(
        update(Ref)
        .where(Ref.repo_id == repo_id, Ref.kind == kind, Ref.name == name, Ref.commit_id == old)
        .values(commit_id=new)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise _RacedError()


class _RacedError(Exception):
    """The branch moved between reading and writing it; retry on the new head."""


def create_commit(
    db: Database,
    repo_id: int,
    branch: str,
    changes: Sequence[FileChange],
    *,
    title: str,
    message: str = "",
    author: str,
    parent_commit: str | None = None,
) -> tuple[str, bool]:
    """Commit ``changes`` on top of ``branch``; return (commit id, whether the tree changed). The bare ref move,
    without scan gate, policy or events: write paths use ``commit_flow.commit``.

    Without ``parent_commit`` concurrent commits serialise (each retries on the new head); with it, a head that
    moved is a :class:`PreconditionFailedError`.
    """

    def attempt(session: Session, repo: Repo) -> tuple[str, bool]:
        commit, changed = commit_on(
            session, repo, branch, changes, title=title, message=message, author=author, parent_commit=parent_commit
        )
        return commit.id, changed

    return retried(db, repo_id, attempt)


def squash_history(db: Database, repo_id: int, branch: str, *, title: str, author: str) -> str:
    """Replace the whole history of ``branch`` by one commit without parent holding its head's tree; return its id.

    Serialised with commits to ``branch`` as they are with one another. The old commits stay until garbage
    collection finds no branch or tag reaching them (tags and other branches keep theirs).
    """
    return retried(
        db, repo_id, lambda session, repo: squash_on(session, repo, branch, title=title, author=author)[0].id
    )


def retried(db: Database, repo_id: int, attempt: Callable[[Session, Repo], T]) -> T:
    """Run ``attempt`` in a write transaction of repo ``repo_id`` until no concurrent change of its refs beats it."""
    for number in range(MAX_ATTEMPTS):
        try:
            with db.write() as session:
                repo = session.get(Repo, repo_id)
                if repo is None:
                    raise RepoNotFoundError("the repository was deleted")
                return attempt(session, repo)
        except (_RacedError, SQLIntegrityError, OperationalError):
            if number == MAX_ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (number + 1))
    raise AssertionError("unreachable")
