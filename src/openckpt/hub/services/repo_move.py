"""Rename or transfer a repo (``HfApi.move_repo``): one transaction that changes its owner and name.

The repo keeps its primary key, so everything stored by key (commits, refs, settings, access requests, scan
releases, lineage edges, Xet registrations and tokens) moves with it. Its old name becomes a redirect
(:mod:`openckpt.hub.services.redirects`), which also keeps lineage edges and card links written with it working.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from openckpt.errors import BadRequestError, ConflictError, ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import LineageEdge, Repo
from openckpt.hub.services import redirects
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.names import split_repo_id
from openckpt.hub.services.repos import check_type, find_repo, namespace_of
from openckpt.protocol import REPO_TYPE_PLURAL

__all__ = ["move_repo", "parse_destination"]


def parse_destination(repo_type: str, to_repo: str) -> str:
    """The ``owner/name`` of a destination, which may carry its type's prefix (``datasets/lab/x``); a move to
    another type is a :class:`BadRequestError`."""
    prefix, sep, rest = to_repo.partition("/")
    if sep and rest.count("/") == 1 and prefix in REPO_TYPE_PLURAL.values():
        if prefix != REPO_TYPE_PLURAL[repo_type]:
            raise BadRequestError(f"cannot move a {repo_type} repo to {prefix}: a repo keeps its type")
        to_repo = rest
    return "/".join(split_repo_id(to_repo))


def _is_repo_admin(principal: Principal, repo: Repo) -> bool:
    return principal.is_admin or repo.owner_id == principal.account_id or principal.orgs.get(repo.owner_id) == "admin"


def move_repo(db: Database, principal: Principal, *, repo_type: str, from_id: str, to_id: str) -> Repo:
    """Move ``from_id`` to ``to_id`` (both ``owner/name``) and return the repo's row, under its new name.

    The caller needs a write token, admin rights on the repo (its owner, an admin of its org, or a hub admin) and
    the right to create repos in the destination namespace.
    """
    check_type(repo_type)
    from_id = "/".join(split_repo_id(from_id))
    to_id = parse_destination(repo_type, to_id)
    to_owner, to_name = to_id.split("/")
    try:
        with db.write() as session:
            repo = find_repo(session, principal, repo_type=repo_type, repo_id=from_id)
            if not principal.can_write:
                raise ForbiddenError(f"This token is read-only: it cannot move {from_id}")
            if not _is_repo_admin(principal, repo):
                raise ForbiddenError(
                    f"Only an admin of {from_id} (its owner or an admin of its organization) can move it"
                )
            if to_id == from_id:
                raise BadRequestError(f"{from_id} already has this name")
            account = namespace_of(session, principal, repo_type, to_owner)
            taken = session.scalar(
                select(Repo.id).where(Repo.type == repo_type, Repo.owner_id == account.id, Repo.name == to_name)
            )
            if taken is not None:
                raise ConflictError(f"A {repo_type} repo named {to_id} already exists: choose another name")
            old_owner_id, old_name = repo.owner_id, repo.name
            redirects.forget(session, repo_type, account.id, to_name)
            repo.owner_id, repo.name, repo.owner = account.id, to_name, account
            session.flush()
            redirects.remember(session, repo, old_owner_id, old_name)
            if repo_type == "model":  # edges that named this id before any repo had it now name this repo
                session.execute(
                    update(LineageEdge)
                    .where(
                        LineageEdge.base == to_id, LineageEdge.base_repo_id.is_(None), LineageEdge.repo_id != repo.id
                    )
                    .values(base_repo_id=repo.id)
                )
    except SQLIntegrityError:  # a concurrent create or move took the name first
        raise ConflictError(f"A {repo_type} repo named {to_id} already exists: choose another name") from None
    return repo
