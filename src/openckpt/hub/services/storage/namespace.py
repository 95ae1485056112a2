"""A namespace's repos and buckets with their storage, as the Hub's settings list them (``HfApi.list_user_repos``):
whose namespace a caller may list (its own, or an organisation's it belongs to; any for a hub admin), and each of
its repos and buckets with its physical bytes, visibility and last change, the largest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from openckpt.errors import EntryNotFoundError, ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Bucket, Repo
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.storage.accounting import RepoUsage, account_owner
from openckpt.store.blobs import BlobStore

__all__ = ["Holding", "holdings", "namespace_owner"]


@dataclass(frozen=True)
class Holding:
    """A repo or bucket of the namespace: its figures, physical bytes (rounded), visibility and last change."""

    usage: RepoUsage
    storage: int
    private: bool
    updated_at: datetime


def namespace_owner(db: Database, principal: Principal, *, org: str | None) -> int:
    """The account whose repos the caller lists: itself, or the organisation ``org`` if it belongs to it
    (:class:`EntryNotFoundError` if there is no such organisation, :class:`ForbiddenError` if it is not a member)."""
    if org is None:
        return principal.account_id
    with db.read() as session:
        org_pk = session.scalar(select(Account.id).where(Account.name == org, Account.kind == "org"))
    if org_pk is None:
        raise EntryNotFoundError(f"no organisation {org!r} on this hub")
    if not (principal.is_admin or org_pk in principal.orgs):
        raise ForbiddenError(f"only members of {org} may list its repositories")
    return org_pk


def holdings(db: Database, store: BlobStore, *, owner_pk: int) -> list[Holding]:
    """Every repo and bucket of the account ``owner_pk`` still there once counted, the largest first (then by
    name)."""
    usage = account_owner(db, store, owner_pk)
    with db.read() as session:
        rows = select(Repo.id, Repo.private, Repo.last_modified).where(Repo.owner_id == owner_pk)
        details = {rid: (private, modified) for rid, private, modified in session.execute(rows)}
        buckets = select(Bucket.id, Bucket.private, Bucket.updated_at).where(Bucket.owner_id == owner_pk)
        details.update({-bid: (private, updated) for bid, private, updated in session.execute(buckets)})
    found = [  # not deleted meanwhile
        Holding(u, round(u.physical_bytes), *details[rid]) for rid, u in usage.items() if rid in details
    ]
    found.sort(key=lambda h: (-h.storage, h.usage.repo_id))
    return found
