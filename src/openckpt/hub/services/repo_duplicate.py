"""Duplicate a repo (``HfApi.duplicate_repo``): a server-side copy with its whole history, made in one transaction.

Storage is content-addressed, so a copy writes rows only, never bytes: the source's commits reachable from its
branches and tags become commits of the copy (new ids, since a commit id names its repo; same parents, trees, titles,
messages, authors and dates), its branches and tags (with their messages) point at them, and the copy derives its
card data, tags and lineage from its head as after a commit. Blobs and Xet files are shared by sha256, so the copy's
files are all there when the call returns. Not copied: gating and access requests, likes and downloads, scan
releases (the copy's owner reviews flagged files anew), old names (redirects), uploads not yet committed, and
commits no branch or tag reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from openckpt.errors import ConflictError, ForbiddenError, PolicyViolationError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Commit, Ref, Repo
from openckpt.hub.services import access, governance, possession
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import rewrite_commits
from openckpt.hub.services.names import check_name, split_repo_id
from openckpt.hub.services.repos import (
    check_free,
    check_type,
    find_repo,
    insert_repo_row,
    namespace_of,
    refresh_metadata_of,
)
from openckpt.hub.services.trees import read_tree
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = ["destination", "duplicate_repo"]


@dataclass(frozen=True)
class _RefRow:
    kind: str
    name: str
    commit_id: str
    message: str | None


def destination(principal: Principal, from_id: str, *, repository: str | None) -> str:
    """The ``owner/name`` of the copy: ``repository`` (a bare name goes to the caller's namespace), by default the
    source's name in the caller's namespace."""
    if repository is None:
        repository = from_id.rpartition("/")[2]
    if "/" not in repository:
        return f"{principal.name}/{check_name(repository, 'repo name')}"
    return "/".join(split_repo_id(repository))


def _source(session: Session, principal: Principal, repo_type: str, from_id: str) -> Repo:
    """The source, if the caller may see it and download its files (a gated repo needs granted access)."""
    source = find_repo(session, principal, repo_type=repo_type, repo_id=from_id)
    access.check_download(session, principal, repo=source, path="")
    return source


def _check_policy(
    session: Session, store: BlobStore, settings: Settings, target: Repo, refs: Sequence[_RefRow]
) -> None:
    """Refuse the copy if the license policy of its owner (or of the server) would refuse a branch head there."""
    if target.type != "model" or governance.effective_policy(session, settings, target).empty:
        return
    for ref in refs:
        if ref.kind != "branch":
            continue
        head = session.get(Commit, ref.commit_id)
        assert head is not None
        refused = governance.policy_refusal(
            session, store, settings, target, read_tree(session, head.tree_id), head.tree_id
        )
        if refused is not None:
            raise PolicyViolationError(
                f"the license policy of {refused[0]} refuses this copy of branch {ref.name!r}: {refused[1]}"
            )


def _copy_history(session: Session, source: Repo, repo: Repo, refs: Sequence[_RefRow]) -> None:
    """Add to ``repo`` the commits of ``source`` that ``refs`` reach, then the refs themselves."""
    commits = {c.id: c for c in session.scalars(select(Commit).where(Commit.repo_id == source.id))}
    if any(ref.commit_id not in commits for ref in refs):
        raise ConflictError(f"{source.repo_id} changed while it was being duplicated: try again")
    mapped = rewrite_commits(session, commits, [ref.commit_id for ref in refs], repo_id=repo.id)
    possession.copy_objects(session, source.id, repo.id)  # the copy's readers have what its history holds
    for ref in refs:
        session.add(
            Ref(repo_id=repo.id, kind=ref.kind, name=ref.name, commit_id=mapped[ref.commit_id], message=ref.message)
        )


def duplicate_repo(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    principal: Principal,
    repo_type: str,
    from_id: str,
    to_id: str,
    private: bool | None = None,
) -> Repo:
    """Copy ``from_id`` with its history to the new repo ``to_id`` (both ``owner/name``); return the new repo's row.

    The caller needs to see the source and download its files, a write token and the right to create repos in the
    destination namespace, whose license policy must let the branch heads in. ``private`` defaults to the source's.
    """
    check_type(repo_type)
    from_id = "/".join(split_repo_id(from_id))
    to_owner, to_name = split_repo_id(to_id)
    with db.read() as session:  # checks first, the license policy's outside the write transaction
        source = _source(session, principal, repo_type, from_id)
        if not principal.can_write:
            raise ForbiddenError(f"This token is read-only: it cannot create a {repo_type} repo")
        account: Account = namespace_of(session, principal, repo_type, to_owner)
        check_free(session, repo_type, account, to_name)
        pr = Ref.kind == "pr"  # pull requests stay with their discussions in the source
        rows = session.scalars(select(Ref).where(Ref.repo_id == source.id, ~pr).order_by(Ref.kind, Ref.name))
        refs = [_RefRow(r.kind, r.name, r.commit_id, r.message) for r in rows]
        target = Repo(type=repo_type, owner_id=account.id, name=to_name, owner=account)  # not added: for the policy
        _check_policy(session, store, settings, target, refs)
    try:
        with db.write() as session:  # the copy of the refs read above: complete, or not there at all
            source = _source(session, principal, repo_type, from_id)
            keep = source.private if private is None else private
            repo = insert_repo_row(session, principal, repo_type, to_name, to_owner, keep)
            _copy_history(session, source, repo, refs)
            repo.default_branch = source.default_branch
            session.flush()
            refresh_metadata_of(session, store, repo)
    except SQLIntegrityError:  # a concurrent create, move or duplicate took the name first
        raise ConflictError(f"You already created this {repo_type} repo: {to_id}") from None
    return repo
