"""Old names of moved repos: a read of an old name reaches the repo, until a repo is created or moved there."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session, joinedload

from openckpt.hub.db.models import Account, Repo, RepoRedirect

__all__ = ["follow", "forget", "remember"]

_REDIRECT = (
    select(Repo)
    .join(RepoRedirect, RepoRedirect.repo_id == Repo.id)
    .join(Account, RepoRedirect.owner_id == Account.id)
    .where(
        RepoRedirect.type == bindparam("type"),
        Account.name == bindparam("owner"),
        RepoRedirect.name == bindparam("name"),
    )
    .options(joinedload(Repo.owner))
)


def follow(session: Session, repo_type: str, owner: str, name: str) -> Repo | None:
    """The repo once called ``owner/name``, or None; visibility is the caller's to check."""
    return session.scalar(_REDIRECT, {"type": repo_type, "owner": owner, "name": name})


def forget(session: Session, repo_type: str, owner_id: int, name: str) -> None:
    """Drop the redirect of a name a repo now takes."""
    session.execute(
        delete(RepoRedirect).where(
            RepoRedirect.type == repo_type, RepoRedirect.owner_id == owner_id, RepoRedirect.name == name
        )
    )


def remember(session: Session, repo: Repo, owner_id: int, name: str) -> None:
    """Redirect reads of the old name ``name`` of the account ``owner_id`` to ``repo``."""
    forget(session, repo.type, owner_id, name)
    session.add(RepoRedirect(type=repo.type, owner_id=owner_id, name=name, repo_id=repo.id))
