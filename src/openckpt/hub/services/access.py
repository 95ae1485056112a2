"""Gated repos: who may download, and the access requests (pending, accepted, rejected) of each repo.

As on the Hugging Face Hub, a gated repo's metadata, file list and README.md stay visible; its files' bytes need
an accepted request, or write access to the repo. ``gated: auto`` accepts requests at once; ``manual`` leaves them
pending until someone who may write to the repo accepts them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from openckpt.errors import BadRequestError, EntryNotFoundError, GatedRepoError, UnauthorizedError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import AccessRequest, Account, Repo, utcnow
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.repos import find_repo

__all__ = [
    "STATUSES",
    "UNGATED_PATHS",
    "check_download",
    "grant_access",
    "handle_request",
    "has_access",
    "list_requests",
    "request_access",
    "request_status",
]

STATUSES = ("pending", "accepted", "rejected")
UNGATED_PATHS = frozenset({"README.md", ".gitattributes"})
"""Files of a gated repo anyone who can see the repo may download, as on the Hub (the card is public)."""


def _is_member(principal: Principal, repo: Repo) -> bool:
    return principal.is_admin or repo.owner_id == principal.account_id or repo.owner_id in principal.orgs


def request_status(session: Session, principal: Principal | None, *, repo: Repo) -> str | None:
    """The status of the caller's access request to ``repo``, or None when there is none."""
    if principal is None:
        return None
    found = session.scalar(
        select(AccessRequest.status).where(
            AccessRequest.repo_id == repo.id, AccessRequest.user_id == principal.account_id
        )
    )
    return found


def has_access(session: Session, principal: Principal | None, *, repo: Repo) -> bool:
    """Whether the caller may download the files of ``repo`` (always, unless it is gated)."""
    if not repo.gated:
        return True
    if principal is None:
        return False
    return _is_member(principal, repo) or request_status(session, principal, repo=repo) == "accepted"


def check_download(session: Session, principal: Principal | None, *, repo: Repo, path: str) -> None:
    """Raise :class:`GatedRepoError` unless the caller may download ``path`` of ``repo``."""
    if path in UNGATED_PATHS or has_access(session, principal, repo=repo):
        return
    kind = repo.type
    if principal is None:
        raise GatedRepoError(
            f"Access to {kind} {repo.repo_id} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in."
        )
    status = request_status(session, principal, repo=repo)
    detail = {
        "pending": "Your request to access it is awaiting a review from the repo authors.",
        "rejected": "Your request to access it has been rejected by the repo's authors.",
    }.get(
        status or "",
        f"You must request access to it on the repo's page (or POST /api/{kind}s/{repo.repo_id}"
        "/user-access-request/request) and be granted access.",
    )
    raise GatedRepoError(
        f"Access to {kind} {repo.repo_id} is restricted and you are not in the authorized list. {detail}"
    )


def _manageable(session: Session, principal: Principal, repo_type: str, repo_id: str) -> Repo:
    repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=True)
    if not repo.gated:
        raise BadRequestError(f"{repo_id} is not a gated repo: set gated to 'auto' or 'manual' in its settings first")
    return repo


def request_access(db: Database, principal: Principal, *, repo_type: str, repo_id: str, fields: dict[str, Any]) -> str:
    """File the caller's access request (accepted at once when the repo is ``gated: auto``); its status."""
    with db.write() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
        if not repo.gated:
            raise BadRequestError(f"{repo_id} is not a gated repo: no access request is needed")
        if _is_member(principal, repo):
            return "accepted"
        row = session.scalar(
            select(AccessRequest).where(AccessRequest.repo_id == repo.id, AccessRequest.user_id == principal.account_id)
        )
        if row is not None:
            return row.status  # a rejected user cannot ask again; a pending one waits
        status = "accepted" if repo.gated == "auto" else "pending"
        session.add(AccessRequest(repo_id=repo.id, user_id=principal.account_id, status=status, fields=fields))
        return status


def request_json(row: AccessRequest) -> dict[str, Any]:
    """An access request as ``HfApi.list_*_access_requests`` reads it."""
    return {
        "requestId": str(row.id),
        "user": {"user": row.user.name, "fullname": row.user.fullname or row.user.name, "email": None},
        "status": row.status,
        "timestamp": row.updated_at.isoformat(timespec="milliseconds") + "Z",
        "fields": row.fields or None,
    }


def list_requests(
    db: Database, principal: Principal, *, repo_type: str, repo_id: str, status: str
) -> list[dict[str, Any]]:
    if status not in STATUSES:
        raise EntryNotFoundError(f"no access request list {status!r}: pending, accepted or rejected")
    with db.read() as session:
        repo = _manageable(session, principal, repo_type, repo_id)
        rows = session.scalars(
            select(AccessRequest)
            .where(AccessRequest.repo_id == repo.id, AccessRequest.status == status)
            .options(joinedload(AccessRequest.user))
            .order_by(AccessRequest.updated_at, AccessRequest.id)
        ).all()
        return [request_json(r) for r in rows]


def _find_user(session: Session, name: str) -> Account:
    account = session.scalar(select(Account).where(Account.name == name, Account.kind == "user"))
    if account is None:
        raise EntryNotFoundError(f"no user {name!r} on this hub")
    return account


def handle_request(
    db: Database,
    principal: Principal,
    *,
    repo_type: str,
    repo_id: str,
    user: str | None,
    request_id: str | None,
    status: str,
    reason: str | None = None,
) -> None:
    """Move a request to ``status`` (accept, reject, or back to pending), found by user name or request id."""
    if status not in STATUSES:
        raise BadRequestError("status must be pending, accepted or rejected")
    if (user is None) == (request_id is None):
        raise BadRequestError("expected JSON {user | requestId, status}")
    with db.write() as session:
        repo = _manageable(session, principal, repo_type, repo_id)
        query = select(AccessRequest).where(AccessRequest.repo_id == repo.id)
        if user is not None:
            query = query.where(AccessRequest.user_id == _find_user(session, user).id)
        else:
            wanted = int(request_id) if request_id is not None and request_id.isdigit() else -1
            query = query.where(AccessRequest.id == wanted)
        row = session.scalar(query)
        if row is None:
            raise EntryNotFoundError(f"no access request of {user or request_id!r} to {repo_id}")
        if row.status == status == "pending":
            raise EntryNotFoundError("this access request is already in the pending list")
        row.status, row.updated_at = status, utcnow()
        row.rejection_reason = reason[:2000] if status == "rejected" and reason else None


def grant_access(db: Database, principal: Principal, *, repo_type: str, repo_id: str, user: str) -> None:
    """Give ``user`` access without a request of theirs."""
    with db.write() as session:
        repo = _manageable(session, principal, repo_type, repo_id)
        account = _find_user(session, user)
        row = session.scalar(
            select(AccessRequest).where(AccessRequest.repo_id == repo.id, AccessRequest.user_id == account.id)
        )
        if row is None:
            session.add(AccessRequest(repo_id=repo.id, user_id=account.id, status="accepted", fields={}))
        elif row.status == "accepted":
            raise BadRequestError(f"{user} already has access to {repo_id}")
        else:
            row.status, row.updated_at, row.rejection_reason = "accepted", utcnow(), None


def require_signed_in(principal: Principal | None) -> Principal:
    if principal is None:
        raise UnauthorizedError("Sign in to request access to a gated repo")
    return principal
