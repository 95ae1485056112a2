"""Collections, as ``HfApi`` and ``hf collections`` call them: ``/api/collections`` (list, create),
``/api/collections/{slug}`` (get, update, delete) and ``/api/collections/{slug}/items[/{item}]`` (add, update,
delete), where a slug is ``{owner}/{title-slug}-{24 hex}``.

The shapes are the Hub's: ``owner`` is an object, an item's note is ``{text, html}``, a collection item carries
the ``slug`` the client prefers to its ``id``; list entries have no ``position`` (the client adds its own) and at
most 4 items; the update answers ``{data: collection}``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError
from openckpt.hub.bodies import read_json
from openckpt.hub.context import hub_of, int_param, next_page, optional_principal, require_principal
from openckpt.hub.db.models import Account, Collection
from openckpt.hub.error_response import header_text
from openckpt.hub.services import collections
from openckpt.hub.services.collections import CollectionView, ItemView, slug_of
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


def _json_body(body: Any, expected: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestError(f"expected JSON {expected}")
    return body


def _url(request: Request, found: CollectionView) -> str:
    return f"{str(request.base_url).rstrip('/')}/collections/{slug_of(found.collection)}"


@router.get("/api/collections")
def list_all(request: Request) -> JSONResponse:
    q = request.query_params
    offset = int_param(request, "offset", 0)
    size = min(int_param(request, "limit", PAGE) or PAGE, MAX_PAGE)
    with hub_of(request).db.read() as session:
        principal = optional_principal(request, db=session)
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
async def create(request: Request) -> JSONResponse:
    principal = require_principal(request)
    body = _json_body(await read_json(request), "{title, namespace?, description?, private?}")
    found, created = await run_in_threadpool(
        collections.create_collection,
        hub_of(request).db,
        principal,
        body.get("title"),
        namespace=body.get("namespace"),
        description=body.get("description"),
        private=body.get("private", False),
    )
    data = collection_json(found)
    if not created:  # the client reads the slug of the existing one from the 409 (exists_ok=True)
        message = f"You already have a collection named {found.collection.title!r}: {data['slug']}"
        headers = {ERROR_CODE: "Conflict", ERROR_MESSAGE: header_text(message)}
        return JSONResponse({"error": message, "slug": data["slug"]}, 409, headers=headers)
    return JSONResponse({**data, "url": _url(request, found)})


@router.get("/api/collections/{owner}/{slug}")
def get(request: Request, owner: str, slug: str) -> dict[str, Any]:
    with hub_of(request).db.read() as session:
        principal = optional_principal(request, db=session)
        collection = collections.find_collection(session, principal, f"{owner}/{slug}")
        return collection_json(collections.view(session, principal, collection))


@router.patch("/api/collections/{owner}/{slug}")
async def update(request: Request, owner: str, slug: str) -> dict[str, Any]:
    principal = require_principal(request)
    body = _json_body(await read_json(request), "{title?, description?, private?, theme?, position?}")
    changes: dict[str, object] = {
        k: body[k] for k in ("title", "description", "private", "theme", "position") if k in body
    }
    found = await run_in_threadpool(
        collections.update_collection, hub_of(request).db, principal, f"{owner}/{slug}", changes
    )
    return {"success": True, "data": collection_json(found)}


@router.delete("/api/collections/{owner}/{slug}")
def delete(request: Request, owner: str, slug: str) -> Response:
    collections.delete_collection(hub_of(request).db, require_principal(request), f"{owner}/{slug}")
    return JSONResponse({"success": True})


@router.post("/api/collections/{owner}/{slug}/items")
async def add_item(request: Request, owner: str, slug: str) -> dict[str, Any]:
    principal = require_principal(request)
    body = _json_body(await read_json(request), "{item: {id, type}, note?}")
    item = body.get("item")
    if not isinstance(item, dict):
        raise BadRequestError("expected JSON {item: {id, type}, note?}")
    found = await run_in_threadpool(
        collections.add_item,
        hub_of(request).db,
        principal,
        f"{owner}/{slug}",
        item.get("type"),
        item.get("id"),
        note=body.get("note"),
    )
    return collection_json(found)


@router.patch("/api/collections/{owner}/{slug}/items/{item_id}")
async def update_item(request: Request, owner: str, slug: str, item_id: str) -> dict[str, Any]:
    principal = require_principal(request)
    body = _json_body(await read_json(request), "{note?, position?}")
    changes: dict[str, object] = {k: body[k] for k in ("note", "position") if k in body}
    await run_in_threadpool(collections.update_item, hub_of(request).db, principal, f"{owner}/{slug}", item_id, changes)
    return {"success": True}


@router.delete("/api/collections/{owner}/{slug}/items/{item_id}")
def delete_item(request: Request, owner: str, slug: str, item_id: str) -> dict[str, Any]:
    collections.delete_item(hub_of(request).db, require_principal(request), f"{owner}/{slug}", item_id)
    return {"success": True}
