"""Users and organisations as the Hub's API shows them: overviews (with the repos the caller may see) and an
organisation's members.

Membership is not secret, as on the Hub: anyone sees a user's organisations and an organisation's members; only
the roles in it are for its members and hub admins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openckpt.errors import AccountNotFoundError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Membership, Repo
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.pages import find_account, members, memberships

__all__ = [
    "Member",
    "Overview",
    "find_person",
    "list_members",
    "orgs_of",
    "overview",
    "own_account",
    "writable_namespaces",
]


@dataclass(frozen=True)
class Overview:
    """An account with the number of its repos of each type the caller may see; a user's organisations, or an
    organisation's number of members."""

    account: Account
    repos: dict[str, int]
    """Repo type (``model``, ``dataset``, ``space``) → count."""
    orgs: list[Account] = field(default_factory=list)
    members: int = 0


@dataclass(frozen=True)
class Member:
    """A member of an organisation; ``role`` only if the caller may see it, else None."""

    user: Account
    role: str | None


def find_person(session: Session, name: str, *, kind: str) -> Account:
    """The ``"user"`` or ``"org"`` called ``name``; :class:`AccountNotFoundError` if there is none of that kind."""
    account = find_account(session, name)
    if account is None or account.kind != kind:
        raise AccountNotFoundError(f"{'User' if kind == 'user' else 'Organization'} {name!r} not found")
    return account


def orgs_of(db: Database, principal: Principal) -> list[Account]:
    """The organisations the caller belongs to (its roles are in ``principal.orgs``)."""
    if not principal.orgs:
        return []
    with db.read() as session:
        return list(session.scalars(select(Account).where(Account.id.in_(list(principal.orgs)))))


def own_account(db: Database, principal: Principal) -> tuple[Account | None, list[Account]]:
    """The caller's account (None if deleted meanwhile) and the organisations it belongs to, for its settings."""
    with db.read() as session:
        account = session.get(Account, principal.account_id)
        return account, memberships(session, account) if account is not None else []


def writable_namespaces(db: Database, principal: Principal) -> list[str]:
    """Where the caller may create repos: its own name, then each organisation it writes to."""
    with db.read() as session:
        account = find_account(session, principal.name)
        orgs = memberships(session, account) if account is not None else []
    return [principal.name] + [o.name for o in orgs if principal.orgs.get(o.id) in ("write", "admin")]


def _repo_counts(session: Session, principal: Principal | None, owner: Account) -> dict[str, int]:
    stmt = select(Repo.type, func.count()).where(Repo.owner_id == owner.id).group_by(Repo.type)
    if principal is None or not principal.may_read_private_of(owner.id):
        stmt = stmt.where(Repo.private.is_(False))
    return {repo_type: count for repo_type, count in session.execute(stmt).tuples()}


def overview(session: Session, principal: Principal | None, *, name: str, kind: str) -> Overview:
    """The overview of the ``kind`` account ``name`` as ``principal`` (None: anonymous) sees it."""
    account = find_person(session, name, kind=kind)
    repos = _repo_counts(session, principal, account)
    if kind == "user":
        return Overview(account, repos, orgs=memberships(session, account))
    count = session.scalar(select(func.count()).select_from(Membership).where(Membership.org_id == account.id))
    return Overview(account, repos, members=count or 0)


def list_members(
    session: Session, principal: Principal | None, *, org_name: str, offset: int, limit: int
) -> list[Member]:
    """``limit`` members of the organisation ``org_name`` after ``offset``, by name."""
    org = find_person(session, org_name, kind="org")
    show_roles = principal is not None and (principal.is_admin or org.id in principal.orgs)
    return [
        Member(user, role if show_roles else None) for user, role in members(session, org, offset=offset, limit=limit)
    ]
