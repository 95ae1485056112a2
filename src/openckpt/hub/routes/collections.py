"""Collections, as ``HfApi`` and ``hf collections`` call them: ``/api/collections`` (list, create),
``/api/collections/{slug}`` (get, update, delete) and ``/api/collections/{slug}/items[/{item}]`` (add, update,
delete), where a slug is ``{owner}/{title-slug}-{24 hex}``.

The shapes are the Hub's: ``owner`` is an object, an item's note is ``{text, html}``, a collection item carries
the ``slug`` the client prefers to its ``id``; list entries have no ``position`` (the client adds its own) and at
most 4 items; the update answers ``{data: collection}``.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openckpt.hub.bodies import Invalid, JsonObject
from openckpt.hub.context import int_param, next_page
from openckpt.hub.db.models import Account, Collection
from openckpt.hub.deps import DbDep, PrincipalDep, UserDep, json_body
from openckpt.hub.error_response import header_text
from openckpt.hub.services.community import collections
from openckpt.hub.services.community.collections import CollectionView, ItemView, slug_of
from openckpt.hub.views import iso
from openckpt.protocol import ERROR_CODE, ERROR_MESSAGE

__all__ = ["collection_json", "router"]

router = APIRouter()
PAGE, MAX_PAGE = 100, 1000


def _owner_json(account: Account) -> dict[str, Any]:
    return {
        "_id": str(account.id),
        "name": account.name,
        "fullname": account.fullname or account.name,
        "type": account.kind,
        "avatarUrl": "",
        "isPro": False,
    }


def _item_json(found: ItemView) -> dict[str, Any]:
    item = found.item
    data: dict[str, Any] = {"_id": item.id, "position": item.position, "type": item.type}
    if found.repo is not None:
        repo = found.repo
        data.update(
            id=repo.repo_id,
            author=repo.owner.name,
            repoType=repo.type,
            private=repo.private,
            gated=repo.gated or False,
            likes=repo.likes,
            downloads=repo.downloads,
            lastModified=iso(repo.last_modified),
        )
    elif found.target is not None:
        target = found.target
        data.update(
            id=target.id,
            slug=slug_of(target),
            title=target.title,
            private=target.private,
            lastUpdated=iso(target.updated_at),
        )
    else:
        data["id"] = item.paper_id
    if item.note:
        data["note"] = {"text": item.note, "html": escape(item.note)}
    return data


def collection_json(found: CollectionView, *, position: bool = True) -> dict[str, Any]:
    """A collection as ``Collection`` parses it; without ``position`` for list entries."""
    c: Collection = found.collection
    data: dict[str, Any] = {
        "id": c.id,
        "slug": slug_of(c),
        "title": c.title,
        "owner": _owner_json(c.owner),
        "items": [_item_json(i) for i in found.items],
        "lastUpdated": iso(c.updated_at),
        "private": c.private,
        "theme": c.theme,
        "upvotes": 0,
        "isUpvotedByUser": False,
        "gating": False,
        "numItems": found.total,
    }
    if c.description is not None:
        data["description"] = c.description
    if position:
        data["position"] = c.position
    return data


class CreateBody(JsonObject):
    """``HfApi.create_collection``: the service checks each value."""

    expected = "expected JSON {title, namespace?, description?, private?}"
    title: Any = None
    namespace: Any = None
    description: Any = None
    private: Any = False


class UpdateBody(JsonObject):
    """``HfApi.update_collection_metadata``: what it sends changes."""

    expected = "expected JSON {title?, description?, private?, theme?, position?}"
    title: Any = None
    description: Any = None
    private: Any = None
    theme: Any = None
    position: Any = None


class ItemBody(JsonObject):
    expected = "expected JSON {item: {id, type}, note?}"
    item: Annotated[dict[str, Any], Invalid(expected)]
    note: Any = None


class ItemUpdateBody(JsonObject):
    expected = "expected JSON {note?, position?}"
    note: Any = None
    position: Any = None


def _url(request: Request, found: CollectionView) -> str:
    return f"{str(request.base_url).rstrip('/')}/collections/{slug_of(found.collection)}"


@router.get("/api/collections")
def list_all(request: Request, db: DbDep, principal: PrincipalDep) -> JSONResponse:
    q = request.query_params
    offset = int_param(request, "offset", 0)
    size = min(int_param(request, "limit", PAGE) or PAGE, MAX_PAGE)
    with db.read() as session:
        found = collections.list_collections(
            session,
            principal,
            owners=q.getlist("owner"),
            item=q.get("item"),
            sort=q.get("sort"),
            offset=offset,
            limit=size + 1,
        )
        items = [collection_json(f, position=False) for f in found[:size]]
    return JSONResponse(items, headers=next_page(request, offset + size) if len(found) > size else None)


@router.post("/api/collections")
async def create(
    request: Request, db: DbDep, principal: UserDep, body: Annotated[CreateBody, Depends(json_body(CreateBody))]
) -> JSONResponse:
    found, created = await run_in_threadpool(
        collections.create_collection,
        db,
        principal,
        title=body.title,
        namespace=body.namespace,
        description=body.description,
        private=body.private,
    )
    data = collection_json(found)
    if not created:  # the client reads the slug of the existing one from the 409 (exists_ok=True)
        message = f"You already have a collection named {found.collection.title!r}: {data['slug']}"
        headers = {ERROR_CODE: "Conflict", ERROR_MESSAGE: header_text(message)}
        return JSONResponse({"error": message, "slug": data["slug"]}, 409, headers=headers)
    return JSONResponse({**data, "url": _url(request, found)})


@router.get("/api/collections/{owner}/{slug}")
def get(db: DbDep, principal: PrincipalDep, owner: str, slug: str) -> dict[str, Any]:
    with db.read() as session:
        collection = collections.find_collection(session, principal, slug=f"{owner}/{slug}")
        return collection_json(collections.view(session, principal, collection=collection))


@router.patch("/api/collections/{owner}/{slug}")
async def update(
    db: DbDep, principal: UserDep, body: Annotated[UpdateBody, Depends(json_body(UpdateBody))], owner: str, slug: str
) -> dict[str, Any]:
    found = await run_in_threadpool(
        collections.update_collection, db, principal, slug=f"{owner}/{slug}", changes=body.sent()
    )
    return {"success": True, "data": collection_json(found)}


@router.delete("/api/collections/{owner}/{slug}")
def delete(db: DbDep, principal: UserDep, owner: str, slug: str) -> Response:
    collections.delete_collection(db, principal, slug=f"{owner}/{slug}")
    return JSONResponse({"success": True})


@router.post("/api/collections/{owner}/{slug}/items")
async def add_item(
    db: DbDep, principal: UserDep, body: Annotated[ItemBody, Depends(json_body(ItemBody))], owner: str, slug: str
) -> dict[str, Any]:
    item = body.item
    found = await run_in_threadpool(
        collections.add_item,
        db,
        principal,
        slug=f"{owner}/{slug}",
        item_type=item.get("type"),
        item_id=item.get("id"),
        note=body.note,
    )
    return collection_json(found)


@router.patch("/api/collections/{owner}/{slug}/items/{item_id}")
async def update_item(
    db: DbDep,
    principal: UserDep,
    body: Annotated[ItemUpdateBody, Depends(json_body(ItemUpdateBody))],
    owner: str,
    slug: str,
    item_id: str,
) -> dict[str, Any]:
    await run_in_threadpool(
        collections.update_item,
        db,
        principal,
        slug=f"{owner}/{slug}",
        item_object_id=item_id,
        changes=body.sent(),
    )
    return {"success": True}


@router.delete("/api/collections/{owner}/{slug}/items/{item_id}")
def delete_item(db: DbDep, principal: UserDep, owner: str, slug: str, item_id: str) -> dict[str, Any]:
    collections.delete_item(db, principal, slug=f"{owner}/{slug}", item_object_id=item_id)
    return {"success": True}
