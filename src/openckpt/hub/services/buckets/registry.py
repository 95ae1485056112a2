"""Buckets: mutable, unversioned storage under an account (``HfApi.create_bucket`` and friends).

A bucket is a row of ``buckets`` and a row of ``bucket_files`` per path naming a Xet file (see
:mod:`openckpt.hub.services.buckets.files`). Who may do what follows repos: a private bucket is invisible (a
:class:`BucketNotFoundError`, as if it did not exist) to all but its owner, the members of its organisation and hub
admins; writing needs a write token of the owner or of an org member with the write or admin role; moving needs
admin rights on it, as for repos.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session, contains_eager

from openckpt.errors import BadRequestError, BucketNotFoundError, ConflictError, ForbiddenError, UnauthorizedError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Bucket, BucketFile, utcnow
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.names import check_name, split_repo_id
from openckpt.hub.services.repos import namespace_of

__all__ = [
    "BucketSummary",
    "create_bucket",
    "delete_bucket",
    "find_bucket",
    "list_buckets",
    "may_read_bucket",
    "move_bucket",
    "owner_name",
    "summarize",
    "update_settings",
]

ME = "me"
"""The namespace clients name the caller's own account by (``/api/buckets/me/...``)."""

_BY_NAME = (
    select(Bucket)
    .join(Account, Bucket.owner_id == Account.id)
    .where(Account.name == bindparam("owner"), Bucket.name == bindparam("name"))
    .options(contains_eager(Bucket.owner))
)


@dataclass(frozen=True)
class BucketSummary:
    """What ``bucket_info`` and ``list_buckets`` answer about a bucket."""

    id: str
    private: bool
    created_at: datetime
    updated_at: datetime
    size: int
    total_files: int


def owner_name(principal: Principal | None, owner: str) -> str:
    """The account a URL's namespace names: ``me`` is the caller (a 401 when anonymous)."""
    if owner != ME:
        return owner
    if principal is None:
        raise UnauthorizedError("the namespace 'me' names the caller: send a token")
    return principal.name


def may_read_bucket(principal: Principal | None, bucket: Bucket) -> bool:
    return not bucket.private or (principal is not None and principal.may_read_private_of(bucket.owner_id))


def _not_found(bucket_id: str) -> BucketNotFoundError:
    return BucketNotFoundError(
        f"Bucket Not Found: {bucket_id}. If the bucket is private, make sure you are authenticated with a token "
        "of an account that may see it."
    )


def find_bucket(session: Session, bucket_id: str, *, principal: Principal | None, write: bool = False) -> Bucket:
    """The bucket, if the caller may see it (else :class:`BucketNotFoundError`) and, with ``write``, may write to it
    (else :class:`ForbiddenError`)."""
    owner, name = split_repo_id(bucket_id)
    bucket = session.scalar(_BY_NAME, {"owner": owner_name(principal, owner), "name": name})
    if bucket is None or not may_read_bucket(principal, bucket):
        raise _not_found(bucket_id)
    if write and (principal is None or not principal.can_write or not principal.may_write_to(bucket.owner_id)):
        read_only = principal is not None and not principal.can_write
        raise ForbiddenError(f"You don't have write access to bucket {bucket_id}" + (read_only * ": read-only token"))
    return bucket


def create_bucket(db: Database, principal: Principal, *, owner: str, name: str, private: bool) -> Bucket:
    """A new empty bucket ``owner/name``: :class:`ConflictError` if it exists, :class:`ForbiddenError` without the
    right to create in ``owner``."""
    check_name(name, "bucket name")
    owner = check_name(owner_name(principal, owner), "namespace")
    if not principal.can_write:
        raise ForbiddenError("This token is read-only: it cannot create a bucket")
    try:
        with db.write() as session:
            account = namespace_of(session, principal, "bucket", owner)
            if session.scalar(select(Bucket.id).where(Bucket.owner_id == account.id, Bucket.name == name)):
                raise ConflictError(f"You already created this bucket: {owner}/{name}")
            bucket = Bucket(owner_id=account.id, name=name, private=private, owner=account)
            session.add(bucket)
    except SQLIntegrityError:  # a concurrent create of the same bucket
        raise ConflictError(f"You already created this bucket: {owner}/{name}") from None
    return bucket


def summarize(session: Session, buckets: Iterable[Bucket]) -> list[BucketSummary]:
    """Each bucket's summary: total bytes and files counted from its rows (one grouped query)."""
    buckets = list(buckets)
    counts: dict[int, tuple[int, int]] = {}
    ids = [b.id for b in buckets]
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(BucketFile.bucket_id, func.coalesce(func.sum(BucketFile.size), 0), func.count())
            .where(BucketFile.bucket_id.in_(ids[start : start + 500]))
            .group_by(BucketFile.bucket_id)
        ).tuples()
        counts.update({bid: (int(size), int(n)) for bid, size, n in rows})
    return [
        BucketSummary(b.bucket_id, b.private, b.created_at, b.updated_at, *counts.get(b.id, (0, 0))) for b in buckets
    ]


def list_buckets(session: Session, principal: Principal | None, *, namespace: str, search: str | None) -> list[Bucket]:
    """The buckets of ``namespace`` the caller may see, by name; ``search`` keeps names containing it."""
    owner = session.scalar(select(Account).where(Account.name == owner_name(principal, namespace)))
    if owner is None:
        return []
    query = select(Bucket).where(Bucket.owner_id == owner.id).order_by(Bucket.name)
    if principal is None or not principal.may_read_private_of(owner.id):
        query = query.where(Bucket.private.is_(False))
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(or_(Bucket.name.ilike(f"%{escaped}%", escape="\\")))
    found = list(session.scalars(query))
    for bucket in found:
        bucket.owner = owner
    return found


def update_settings(db: Database, principal: Principal, *, bucket_id: str, private: bool | None) -> Bucket:
    """Change the bucket's visibility; return its row."""
    with db.write() as session:
        bucket = find_bucket(session, bucket_id, principal=principal, write=True)
        if private is not None:
            bucket.private = private
            bucket.updated_at = utcnow()
    return bucket


def delete_bucket(db: Database, principal: Principal, *, bucket_id: str) -> Bucket:
    """Delete the bucket and its files at once; what only they used is garbage for the collector."""
    with db.write() as session:
        bucket = find_bucket(session, bucket_id, principal=principal, write=True)
        session.delete(bucket)  # its bucket_files go by ON DELETE CASCADE
    return bucket


def _is_admin_of(principal: Principal, bucket: Bucket) -> bool:
    owner = bucket.owner_id
    return principal.is_admin or owner == principal.account_id or principal.orgs.get(owner) == "admin"


def move_bucket(db: Database, principal: Principal, *, from_id: str, to_id: str) -> Bucket:
    """Rename or transfer a bucket (``HfApi.move_bucket``): the caller needs a write token, admin rights on it and
    the right to create in the destination namespace."""
    from_id = "/".join(split_repo_id(from_id))
    to_owner, to_name = split_repo_id(to_id.removeprefix("buckets/"))
    try:
        with db.write() as session:
            bucket = find_bucket(session, from_id, principal=principal)
            if not principal.can_write:
                raise ForbiddenError(f"This token is read-only: it cannot move {from_id}")
            if not _is_admin_of(principal, bucket):
                raise ForbiddenError(f"Only an admin of {from_id} (its owner or an org admin) can move it")
            account = namespace_of(session, principal, "bucket", to_owner)
            if (account.id, to_name) == (bucket.owner_id, bucket.name):
                raise BadRequestError(f"{from_id} already has this name")
            if session.scalar(select(Bucket.id).where(Bucket.owner_id == account.id, Bucket.name == to_name)):
                raise ConflictError(f"A bucket named {to_owner}/{to_name} already exists: choose another name")
            bucket.owner_id, bucket.name, bucket.owner = account.id, to_name, account
            bucket.updated_at = utcnow()
    except SQLIntegrityError:  # a concurrent create or move took the name first
        raise ConflictError(f"A bucket named {to_owner}/{to_name} already exists: choose another name") from None
    return bucket
