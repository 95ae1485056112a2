"""Likes: an account likes a repo it may see; ``repos.likes`` counts the likes, changed in the same transaction.

The Hub's rules: liking needs a token that may write (a read-only token only reads); the likers of a repo are
visible to whoever sees the repo; a user's liked repos list only those the caller may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from openckpt.errors import ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Like, Repo
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.people import find_person
from openckpt.hub.services.repos import find_repo

__all__ = ["LikedRepo", "is_liked", "like", "liked_repos", "likers", "unlike"]


@dataclass(frozen=True)
class LikedRepo:
    repo: Repo
    liked_at: datetime


def _may_like(principal: Principal) -> None:
    if not principal.can_write:
        raise ForbiddenError("This token is read-only: it cannot like or unlike repos")


def like(db: Database, principal: Principal, repo_type: str, repo_id: str) -> Repo:
    """The caller likes the repo (again: a no-op); return its row with the new count."""
    _may_like(principal)
    with db.write() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
        try:
            with session.begin_nested():  # a concurrent like of the same account lands first: nothing to count
                session.add(Like(account_id=principal.account_id, repo_id=repo.id))
        except SQLIntegrityError:
            pass
        else:
            _count(session, repo, +1)
    return repo


def unlike(db: Database, principal: Principal, repo_type: str, repo_id: str) -> Repo:
    """The caller no longer likes the repo (a no-op if it did not); return its row with the new count."""
    _may_like(principal)
    with db.write() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
        gone = session.execute(
            delete(Like).where(Like.account_id == principal.account_id, Like.repo_id == repo.id),
            execution_options={"synchronize_session": False},
        )
        if gone.rowcount:  # type: ignore[attr-defined]
            _count(session, repo, -1)
    return repo


def _count(session: Session, repo: Repo, step: int) -> None:
    """Add ``step`` to the repo's counter in the database (relative: concurrent likes of it lose no update)."""
    count = session.execute(
        update(Repo).where(Repo.id == repo.id).values(likes=Repo.likes + step).returning(Repo.likes),
        execution_options={"synchronize_session": False},
    ).scalar_one()
    set_committed_value(repo, "likes", count)


def is_liked(session: Session, principal: Principal | None, *, repo: Repo) -> bool:
    return principal is not None and session.get(Like, (principal.account_id, repo.id)) is not None


def likers(
    session: Session, principal: Principal | None, *, repo_type: str, repo_id: str, offset: int, limit: int
) -> list[Account]:
    """The accounts that like the repo, newest like first, if the caller may see the repo."""
    repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
    stmt = (
        select(Account)
        .join(Like, Like.account_id == Account.id)
        .where(Like.repo_id == repo.id)
        .order_by(Like.created_at.desc(), Account.id)
        .offset(offset)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def liked_repos(
    session: Session, principal: Principal | None, *, user: str, offset: int, limit: int
) -> list[LikedRepo]:
    """The repos ``user`` likes that the caller may see, newest like first."""
    account = find_person(session, user, kind="user")
    stmt = (
        select(Repo, Like.created_at)
        .join(Like, Like.repo_id == Repo.id)
        .where(Like.account_id == account.id)
        .options(joinedload(Repo.owner))
        .order_by(Like.created_at.desc(), Repo.id)
    )
    if principal is None:
        stmt = stmt.where(Repo.private.is_(False))
    elif not principal.is_admin:
        stmt = stmt.where(or_(Repo.private.is_(False), Repo.owner_id.in_([principal.account_id, *principal.orgs])))
    rows = session.execute(stmt.offset(offset).limit(limit)).all()
    return [LikedRepo(repo, liked_at) for repo, liked_at in rows]
