"""Collections: ordered lists of repos, papers and other collections, with a note per item, owned by an account.

A collection's slug is ``{owner}/{title-slug}-{id}`` (``id``: 24 hex digits, as on the Hub); it is found by its
owner and id, so a renamed collection's old slugs still work. Private collections are visible to their owner
(for an organisation: its members) and hub admins only, and written by those who may write to the owner. An item
is shown only to callers who may see what it names: a private repo in a public collection stays invisible to
those who cannot read the repo.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, joinedload

from openckpt.errors import BadRequestError, CollectionNotFoundError, ConflictError, ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Collection, CollectionItem, Repo, utcnow
from openckpt.hub.services.accounts import Principal, may_read
from openckpt.hub.services.names import REPO_TYPES
from openckpt.hub.services.pages import find_account
from openckpt.hub.services.repos import find_repo

__all__ = [
    "ITEM_TYPES",
    "THEMES",
    "CollectionView",
    "ItemView",
    "add_item",
    "create_collection",
    "delete_collection",
    "delete_item",
    "find_collection",
    "list_collections",
    "slug_of",
    "update_collection",
    "update_item",
    "view",
]

ITEM_TYPES = ("model", "dataset", "space", "paper", "collection")
THEMES = ("orange", "blue", "green", "purple", "pink", "indigo")
MAX_TITLE, MAX_DESCRIPTION, MAX_NOTE, MAX_PAPER_ID = 200, 150, 500, 64
_ID = re.compile(r"[0-9a-f]{24}")
_PAPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ItemView:
    """An item the caller may see; ``repo`` or ``target`` (with its owner loaded) is what it names."""

    item: CollectionItem
    repo: Repo | None = None
    target: Collection | None = None


@dataclass(frozen=True)
class CollectionView:
    collection: Collection
    items: list[ItemView]
    total: int
    """Items the caller may see, of which ``items`` may hold only the first few (in lists)."""


def new_id() -> str:
    return secrets.token_hex(12)


def slug_of(collection: Collection) -> str:
    title = re.sub(r"[^a-z0-9]+", "-", collection.title.lower()).strip("-")[:80].strip("-")
    return f"{collection.owner.name}/{title + '-' if title else ''}{collection.id}"


def _may_see(principal: Principal | None, collection: Collection) -> bool:
    return not collection.private or (principal is not None and principal.may_read_private_of(collection.owner_id))


def find_collection(session: Session, principal: Principal | None, *, slug: str, write: bool = False) -> Collection:
    """The collection of ``slug`` if the caller may see it (else :class:`CollectionNotFoundError`, as if there were
    none) and, with ``write``, change it (else :class:`ForbiddenError`)."""
    owner, _, rest = slug.strip("/").partition("/")
    found = None
    if _ID.fullmatch(rest[-24:]) and (len(rest) == 24 or rest[-25:-24] == "-"):
        found = session.scalar(
            select(Collection)
            .join(Account, Collection.owner_id == Account.id)
            .where(Collection.id == rest[-24:], Account.name == owner)
            .options(joinedload(Collection.owner))
        )
    if found is None or not _may_see(principal, found):
        raise CollectionNotFoundError(f"Collection {slug!r} not found")
    if write and (principal is None or not principal.can_write or not principal.may_write_to(found.owner_id)):
        raise ForbiddenError(f"You don't have write access to the collection {slug!r}")
    return found


def _text(value: object, what: str, limit: int, *, empty: bool = True) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise BadRequestError(f"{what} must be a{'' if empty else ' non-empty'} string")
    if len(value) > limit:
        raise BadRequestError(f"{what} is longer than {limit} characters")
    return value


def create_collection(
    db: Database, principal: Principal, *, title: object, namespace: object, description: object, private: object
) -> tuple[CollectionView, bool]:
    """A new collection of ``namespace`` (the caller's own by default), last in its list; if the namespace has one
    of this title already, that one and False."""
    title_text = _text(title, "title", MAX_TITLE, empty=False)
    assert title_text is not None
    about = _text(description, "description", MAX_DESCRIPTION)
    owner_name = namespace if namespace is not None else principal.name
    if not isinstance(owner_name, str) or not isinstance(private, bool):
        raise BadRequestError("expected JSON {title, namespace?, description?, private?: bool}")
    with db.write() as session:
        owner = find_account(session, owner_name)
        if owner is None or not principal.can_write or not principal.may_write_to(owner.id):
            raise ForbiddenError(f"You don't have the rights to create a collection under {owner_name!r}")
        same = session.scalar(
            select(Collection)
            .where(Collection.owner_id == owner.id, Collection.title == title_text)
            .options(joinedload(Collection.owner))
        )
        if same is not None and _may_see(principal, same):
            return view(session, principal, collection=same), False
        last = session.scalar(select(func.max(Collection.position)).where(Collection.owner_id == owner.id))
        collection = Collection(
            id=new_id(),
            owner_id=owner.id,
            owner=owner,
            title=title_text,
            description=about,
            private=private,
            position=(last if last is not None else -1) + 1,
        )
        session.add(collection)
        session.flush()
        return view(session, principal, collection=collection), True


def update_collection(db: Database, principal: Principal, *, slug: str, changes: dict[str, object]) -> CollectionView:
    """Change the title, description, visibility, theme or position (in the owner's list) given in ``changes``."""
    with db.write() as session:
        collection = find_collection(session, principal, slug=slug, write=True)
        if "title" in changes:
            collection.title = _text(changes["title"], "title", MAX_TITLE, empty=False) or collection.title
        if "description" in changes:
            collection.description = _text(changes["description"], "description", MAX_DESCRIPTION)
        if "private" in changes:
            if not isinstance(changes["private"], bool):
                raise BadRequestError("private must be true or false")
            collection.private = changes["private"]
        if "theme" in changes:
            if changes["theme"] not in THEMES:
                raise BadRequestError(f"theme must be one of {', '.join(THEMES)}")
            collection.theme = str(changes["theme"])
        if "position" in changes:
            siblings = session.scalars(
                select(Collection)
                .where(Collection.owner_id == collection.owner_id)
                .order_by(Collection.position, Collection.created_at, Collection.id)
            ).all()
            _move(list(siblings), collection, changes["position"])
        collection.updated_at = utcnow()
        return view(session, principal, collection=collection)


def delete_collection(db: Database, principal: Principal, *, slug: str) -> None:
    """Delete the collection; its items go with it, and so do the items of other collections that name it."""
    with db.write() as session:
        session.delete(find_collection(session, principal, slug=slug, write=True))


def _move(rows: list[Any], row: Collection | CollectionItem, position: object) -> None:
    """Put ``row`` at ``position`` (clamped) of ``rows`` and number them all from 0."""
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise BadRequestError("position must be a non-negative integer")
    ordered = [r for r in rows if r is not row]
    ordered.insert(min(position, len(ordered)), row)
    for index, each in enumerate(ordered):
        each.position = index


def _target(session: Session, principal: Principal, item_type: str, item_id: str) -> dict[str, object]:
    """The columns naming what ``item_id`` of ``item_type`` is, if the caller may see it."""
    if item_type in REPO_TYPES:
        prefix = f"{item_type}s/"
        if item_type != "model" and item_id.startswith(prefix) and item_id.count("/") == 2:
            item_id = item_id[len(prefix) :]  # "datasets/owner/name", as the client's docs write it
        return {"repo_id": find_repo(session, principal, repo_type=item_type, repo_id=item_id).id}
    if item_type == "collection":
        return {"target_id": find_collection(session, principal, slug=item_id).id}
    if item_type == "paper":
        if len(item_id) > MAX_PAPER_ID or not _PAPER.fullmatch(item_id):
            raise BadRequestError(f"invalid paper id {item_id!r}")
        return {"paper_id": item_id}
    raise BadRequestError(f"item type must be one of {', '.join(ITEM_TYPES)}, got {item_type!r}")


def add_item(
    db: Database, principal: Principal, *, slug: str, item_type: object, item_id: object, note: object = None
) -> CollectionView:
    """Add what ``item_id`` names as the collection's last item; :class:`ConflictError` if it is there already."""
    if not isinstance(item_type, str) or not isinstance(item_id, str) or not item_id:
        raise BadRequestError("expected JSON {item: {id, type}, note?}")
    text = _text(note, "note", MAX_NOTE)
    with db.write() as session:
        collection = find_collection(session, principal, slug=slug, write=True)
        columns = _target(session, principal, item_type, item_id)
        if columns.get("target_id") == collection.id:
            raise BadRequestError("a collection cannot contain itself")
        ((column, value),) = columns.items()
        if session.scalar(
            select(CollectionItem.id).where(
                CollectionItem.collection_id == collection.id, getattr(CollectionItem, column) == value
            )
        ):
            raise ConflictError(f"{item_type} {item_id!r} is already in the collection")
        last = session.scalar(
            select(func.max(CollectionItem.position)).where(CollectionItem.collection_id == collection.id)
        )
        session.add(
            CollectionItem(
                id=new_id(),
                collection_id=collection.id,
                type=item_type,
                note=text or None,
                position=(last if last is not None else -1) + 1,
                **columns,
            )
        )
        collection.updated_at = utcnow()
        session.flush()
        return view(session, principal, collection=collection)


def _find_item(session: Session, collection: Collection, item_object_id: str) -> CollectionItem:
    item = session.get(CollectionItem, item_object_id)
    if item is None or item.collection_id != collection.id:
        raise CollectionNotFoundError(f"No item {item_object_id!r} in the collection {slug_of(collection)!r}")
    return item


def update_item(
    db: Database, principal: Principal, *, slug: str, item_object_id: str, changes: dict[str, object]
) -> None:
    """Change an item's note (an empty one removes it) or move it to another position."""
    with db.write() as session:
        collection = find_collection(session, principal, slug=slug, write=True)
        item = _find_item(session, collection, item_object_id)
        if "note" in changes:
            item.note = _text(changes["note"], "note", MAX_NOTE) or None
        if "position" in changes:
            items = session.scalars(
                select(CollectionItem)
                .where(CollectionItem.collection_id == collection.id)
                .order_by(CollectionItem.position, CollectionItem.created_at, CollectionItem.id)
            ).all()
            _move(list(items), item, changes["position"])
        collection.updated_at = utcnow()


def delete_item(db: Database, principal: Principal, *, slug: str, item_object_id: str) -> None:
    with db.write() as session:
        collection = find_collection(session, principal, slug=slug, write=True)
        session.delete(_find_item(session, collection, item_object_id))
        collection.updated_at = utcnow()


def _item_views(
    session: Session, principal: Principal | None, collection_ids: Iterable[str]
) -> dict[str, list[ItemView]]:
    """The items of these collections that the caller may see, in order, by collection id."""
    ids = list(collection_ids)
    out: dict[str, list[ItemView]] = {cid: [] for cid in ids}
    if not ids:
        return out
    rows = session.scalars(
        select(CollectionItem)
        .where(CollectionItem.collection_id.in_(ids))
        .order_by(CollectionItem.position, CollectionItem.created_at, CollectionItem.id)
    ).all()
    repo_ids = {r.repo_id for r in rows if r.repo_id is not None}
    target_ids = {r.target_id for r in rows if r.target_id is not None}
    repos = (
        {r.id: r for r in session.scalars(select(Repo).where(Repo.id.in_(repo_ids)).options(joinedload(Repo.owner)))}
        if repo_ids
        else {}
    )
    targets = (
        {
            c.id: c
            for c in session.scalars(
                select(Collection).where(Collection.id.in_(target_ids)).options(joinedload(Collection.owner))
            )
        }
        if target_ids
        else {}
    )
    for row in rows:
        if row.repo_id is not None:
            repo = repos[row.repo_id]
            if may_read(principal, repo):
                out[row.collection_id].append(ItemView(row, repo=repo))
        elif row.target_id is not None:
            target = targets[row.target_id]
            if _may_see(principal, target):
                out[row.collection_id].append(ItemView(row, target=target))
        else:
            out[row.collection_id].append(ItemView(row))
    return out


def view(session: Session, principal: Principal | None, *, collection: Collection) -> CollectionView:
    """The collection with every item the caller may see."""
    items = _item_views(session, principal, [collection.id])[collection.id]
    return CollectionView(collection, items, len(items))


_SORT: dict[str, Any] = {
    "lastModified": Collection.updated_at.desc(),
    "trending": Collection.updated_at.desc(),
    "upvotes": Collection.updated_at.desc(),
    "position": Collection.position.asc(),
}


def list_collections(
    session: Session,
    principal: Principal | None,
    *,
    owners: list[str],
    item: str | None,
    sort: str | None,
    offset: int,
    limit: int,
    preview: int = 4,
) -> list[CollectionView]:
    """The collections the caller may see, of ``owners`` (any if empty) and holding ``item`` (``models/a/b``,
    ``datasets/a/b``, ``papers/2311.12983``), each with its first ``preview`` visible items; by last change, or in
    the owner's order with ``sort="position"``. (This hub has no upvotes: those and trending sort by last change.)"""
    order = _SORT.get(sort or "lastModified")
    if order is None:
        raise BadRequestError(f"cannot sort collections by {sort!r}: lastModified, trending or upvotes")
    stmt = select(Collection).join(Account, Collection.owner_id == Account.id).options(joinedload(Collection.owner))
    if owners:
        stmt = stmt.where(Account.name.in_(owners))
    if principal is None:
        stmt = stmt.where(Collection.private.is_(False))
    elif not principal.is_admin:
        mine = [principal.account_id, *principal.orgs]
        stmt = stmt.where(or_(Collection.private.is_(False), Collection.owner_id.in_(mine)))
    if item:
        stmt = stmt.where(Collection.id.in_(_holding(session, principal, item)))
    found = list(session.scalars(stmt.order_by(order, Collection.id).offset(offset).limit(limit)))
    items = _item_views(session, principal, [c.id for c in found])
    return [CollectionView(c, items[c.id][:preview], len(items[c.id])) for c in found]


def _holding(session: Session, principal: Principal | None, item: str) -> list[str]:
    """Ids of the collections with an item naming ``item``, if the caller may see what it names."""
    kind, _, name = item.partition("/")
    stmt = select(CollectionItem.collection_id)
    if kind == "papers":
        stmt = stmt.where(CollectionItem.paper_id == name)
    elif kind in ("models", "datasets", "spaces") and name.count("/") == 1:
        owner, _, repo_name = name.partition("/")
        repo = session.scalar(
            select(Repo)
            .join(Account, Repo.owner_id == Account.id)
            .options(joinedload(Repo.owner))
            .where(Repo.type == kind[:-1], Account.name == owner, Repo.name == repo_name)
        )
        if repo is None or not may_read(principal, repo):
            return []
        stmt = stmt.where(CollectionItem.repo_id == repo.id)
    else:
        raise BadRequestError(f"item must be models/…, datasets/…, spaces/… or papers/…, got {item!r}")
    return list(session.scalars(stmt))
