"""Pull requests: commits on ``refs/pr/N`` and merging them into their target branch.

A pull request's ref (kind ``pr``) starts at ``base_commit``, the head of its target when it was opened; commits
on it go through the commit flow like any other (the scan gate ran on them then). A merge moves the target by
compare-and-swap (``commits.move_ref`` inside ``commits.retried``): a fast-forward when the target has not moved
since the base, else one new commit on the target's head holding the pull request's changes, when no path the pull
request changed has changed differently on the target since the base (a three-way merge by file); otherwise it is
refused with a :class:`ConflictError` naming the paths. The owner's license policy is checked on the merged tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from openckpt.errors import (
    BadRequestError,
    ConflictError,
    DiscussionNotFoundError,
    ForbiddenError,
    PolicyViolationError,
)
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Commit, Discussion, DiscussionEvent, Ref, Repo, utcnow
from openckpt.hub.services import commit_flow
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import FileChange, move_ref, new_commit, pr_num, resolve_revision, retried
from openckpt.hub.services.community.discussions import (
    add_event,
    find_discussion,
    may_moderate,
    require_participant,
)
from openckpt.hub.services.governance import policy_refusal
from openckpt.hub.services.tree_writes import write_tree
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = [
    "MergeRequest",
    "Merged",
    "Recorded",
    "check_pr_commit",
    "find_committable",
    "find_uploadable",
    "merge",
    "pr_num",
    "sides",
    "three_way",
]


def check_pr_commit(session: Session, principal: Principal | None, repo: Repo, num: int) -> Discussion:
    """The open pull request ``num`` of ``repo``, if the caller may commit to it: its author or a writer."""
    repo_id = f"{repo.owner.name}/{repo.name}"
    _, d = find_discussion(session, principal, repo_type=repo.type, repo_id=repo_id, num=num)
    who = require_participant(session, principal, repo)
    if not d.is_pull_request:
        raise DiscussionNotFoundError(f"#{num} of {repo_id} is a discussion, not a pull request")
    if who.name != d.author and not may_moderate(who, repo):
        raise ForbiddenError(f"only the author of pull request #{num} or a writer of {repo_id} may commit to it")
    if d.status not in ("open", "draft"):
        raise BadRequestError(f"pull request #{num} is {d.status}: reopen it before committing to it")
    return d


Recorded = Callable[[Session, Discussion, DiscussionEvent], None]
"""Called in the transaction that records a pull request's commit (``commit_flow.PrCommitted``: its webhook
deliveries are written there)."""
Merged = Callable[[Session, Repo, Discussion, str, str], None]
"""Called in a merge's transaction with the repo, the pull request, the target's old head and its new one."""


def sides(session: Session, repo: Repo, *, d: Discussion) -> tuple[Commit, Commit] | None:
    """The commit pull request ``d`` started from and its head now (what its "files changed" compares), or None
    if it is a discussion or its ref is gone."""
    pr = session.get(Ref, (repo.id, "pr", f"refs/pr/{d.num}"))
    if not d.is_pull_request or pr is None or d.base_commit is None:
        return None
    base, head = session.get(Commit, d.base_commit), session.get(Commit, pr.commit_id)
    return (base, head) if base is not None and head is not None else None


def three_way(session: Session, base: str, ours: str, theirs: str) -> tuple[list[FileChange], list[str]]:
    """The changes from tree ``base`` to ``theirs`` (the pull request) to apply on ``ours`` (the target), and the
    paths both changed differently."""
    from openckpt.hub.services.trees import read_tree

    b, o, t = read_tree(session, base), read_tree(session, ours), read_tree(session, theirs)
    changes, conflicts = [], []
    for path in sorted(b.keys() | t.keys()):
        mine = t.get(path)
        if b.get(path) == mine:
            continue
        if o.get(path) != b.get(path) and o.get(path) != mine:
            conflicts.append(path)
        elif mine is None:
            if path in o:
                changes.append(FileChange(path, "delete"))
        else:
            changes.append(FileChange(path, "add", mine.sha256, mine.size, mine.git_oid, mine.lfs))
    return changes, conflicts


@dataclass(frozen=True)
class MergeRequest:
    """``principal`` asks to merge pull request ``num`` of repo ``repo_type``/``repo_id``, with an optional
    ``comment`` recorded before the merge."""

    principal: Principal | None
    repo_type: str
    repo_id: str
    num: int
    comment: str | None = None


def merge(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    request: MergeRequest,
    on_merged: Merged | None = None,
) -> tuple[Repo, str, str, str]:
    """Merge the pull request ``request`` names into its target; return the repo, the target, its old head and its
    new one.

    Its files passed the scan gate when they were committed to the pull request; ``on_merged`` writes the merge's
    events in its transaction, and the commit flow's metadata step follows (``commit_flow.settle``)."""
    principal, repo_type, repo_id, num = request.principal, request.repo_type, request.repo_id, request.num
    with db.read() as session:
        repo, d = find_discussion(session, principal, repo_type=repo_type, repo_id=repo_id, num=num)
        who = require_participant(session, principal, repo)
        if not may_moderate(who, repo):
            raise ForbiddenError(f"only a writer of {repo_id} may merge pull requests")
        if not d.is_pull_request:
            raise BadRequestError(f"#{num} is a discussion, not a pull request")
        if d.status != "open":
            raise BadRequestError(f"pull request #{num} is {d.status}: only an open pull request with commits merges")
        repo_pk = repo.id

    def attempt(session: Session, repo: Repo) -> tuple[Repo, str, str, str]:
        d = session.query(Discussion).filter_by(repo_id=repo.id, num=num).one()
        if d.status != "open" or d.target_branch is None or d.base_commit is None:
            raise BadRequestError(f"pull request #{num} is {d.status}: it cannot be merged")
        target = session.get(Ref, (repo.id, "branch", d.target_branch))
        pr = session.get(Ref, (repo.id, "pr", f"refs/pr/{num}"))
        if target is None or pr is None:
            raise BadRequestError(f"the target branch {d.target_branch!r} of pull request #{num} is gone")
        old = target.commit_id
        assert repo.owner is not None  # loaded for the webhook event of the merge
        head, base, tip = (session.get(Commit, c) for c in (old, d.base_commit, pr.commit_id))
        assert head is not None and base is not None and tip is not None
        if old == base.id:  # fast-forward
            new, tree_id = tip, tip.tree_id
        else:
            changes, conflicts = three_way(session, base.tree_id, head.tree_id, tip.tree_id)
            if conflicts:
                raise ConflictError(
                    f"pull request #{num} conflicts with {d.target_branch!r}: both changed "
                    + ", ".join(conflicts)
                    + ". Update the pull request on the new head first."
                )
            tree_id = write_tree(session, head.tree_id, changes)
            new = _merge_commit(session, repo, head, tree_id, num=num, title=d.title, author=who.name)
        _check_policy(session, store, settings, repo, tree_id)
        move_ref(session, repo.id, "branch", d.target_branch, old, new.id)
        if isinstance(request.comment, str) and request.comment.strip():
            add_event(session, d, "comment", who.name, request.comment.strip())
        d.status, d.merge_commit = "merged", new.id
        add_event(session, d, "status-change", who.name, "merged")
        repo.last_modified = utcnow()
        if on_merged is not None:
            on_merged(session, repo, d, old, new.id)
        return repo, d.target_branch, old, new.id

    done = retried(db, repo_pk, attempt)
    commit_flow.settle(db, store, settings=settings, repo_id=repo_pk, ref=done[1], commit_id=done[3])  # metadata
    return done


def _merge_commit(
    session: Session, repo: Repo, head: Commit, tree_id: str, *, num: int, title: str, author: str
) -> Commit:
    summary = f"Merge pull request #{num}: {title}"
    return new_commit(session, repo, head, tree_id, title=summary, message="", author=author)


def _check_policy(session: Session, store: BlobStore, settings: Settings, repo: Repo, tree_id: str) -> None:
    from openckpt.hub.services.trees import read_tree

    refused = policy_refusal(session, store, settings, repo, read_tree(session, tree_id), tree_id)
    if refused is not None:
        raise PolicyViolationError(f"the license policy of {refused[0]} refuses this merge: {refused[1]}")


def find_uploadable(
    session: Session, principal: Principal | None, repo_type: str, repo_id: str, *, proposing: bool
) -> Repo:
    """The repo, if the caller may upload to it: as a writer, or (``proposing``: files for a pull request) as
    whoever may take part in its discussions."""
    from openckpt.hub.services.repos import find_repo

    repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=not proposing)
    if proposing:
        require_participant(session, principal, repo)
    return repo


def find_committable(
    db: Database, principal: Principal, repo_type: str, repo_id: str, *, revision: str, create_pr: bool = False
) -> Repo:
    """The repo, if the caller may commit to ``revision`` (which must exist): to a branch as a writer; to a pull
    request's ``refs/pr/N`` as its author or a writer; with ``create_pr`` (a pull request onto the branch) as whoever
    may take part in its discussions."""
    from openckpt.hub.services.repos import find_repo

    with db.read() as session:
        num = pr_num(revision)
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=not create_pr and num is None)
        if num is not None:
            check_pr_commit(session, principal, repo, num)
        elif create_pr:
            require_participant(session, principal, repo)
        resolve_revision(session, repo, rev=revision)
        return repo
