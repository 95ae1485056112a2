"""Likes: ``POST`` / ``DELETE /api/{plural}/{owner}/{name}/like`` (the client's ``unlike`` sends the DELETE),
``/api/{plural}/{owner}/{name}/likers`` (``list_repo_likers``) and ``/api/users/{user}/likes``
(``list_liked_repos``), both paged by ``Link``.

Registered before the repos routes, whose ``/api/{plural}/{owner}/{name}`` would otherwise take these paths.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openckpt.hub.context import (
    hub_of,
    int_param,
    next_page,
    optional_principal,
    repo_id_of,
    repo_type_of,
    require_principal,
)
from openckpt.hub.services import likes
from openckpt.hub.views import iso

__all__ = ["router"]

router = APIRouter()
PAGE, MAX_PAGE = 100, 1000
"""Entries a page of likers or liked repos holds: by default, and at most (its ``limit``)."""


@router.post("/api/{plural}/{owner}/{name}/like")
async def like(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    principal = require_principal(request)
    repo = await run_in_threadpool(
        likes.like, hub_of(request).db, principal, repo_type_of(plural), repo_id_of(owner, name)
    )
    return {"likes": repo.likes}


@router.delete("/api/{plural}/{owner}/{name}/like")
async def unlike(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    principal = require_principal(request)
    repo = await run_in_threadpool(
        likes.unlike, hub_of(request).db, principal, repo_type_of(plural), repo_id_of(owner, name)
    )
    return {"likes": repo.likes}


def _page(request: Request) -> tuple[int, int]:
    return int_param(request, "offset", 0), min(int_param(request, "limit", PAGE) or PAGE, MAX_PAGE)


@router.get("/api/{plural}/{owner}/{name}/likers")
def likers(request: Request, plural: str, owner: str, name: str) -> JSONResponse:
    """The accounts that like the repo, as ``User`` parses them; anyone who sees the repo may ask."""
    offset, size = _page(request)
    with hub_of(request).db.read() as session:
        principal = optional_principal(request, db=session)
        found = likes.likers(
            session, principal, repo_type_of(plural), repo_id_of(owner, name), offset=offset, limit=size + 1
        )
        items = [
            {"user": a.name, "fullname": a.fullname or a.name, "avatarUrl": "", "type": a.kind} for a in found[:size]
        ]
    return JSONResponse(items, headers=next_page(request, offset + size) if len(found) > size else None)


@router.get("/api/users/{username}/likes")
def liked(request: Request, username: str) -> JSONResponse:
    """The repos a user likes that the caller may see: ``[{createdAt, repo: {name, type}}]``."""
    offset, size = _page(request)
    with hub_of(request).db.read() as session:
        principal = optional_principal(request, db=session)
        found = likes.liked_repos(session, principal, username, offset=offset, limit=size + 1)
        items = [
            {"createdAt": iso(f.liked_at), "repo": {"name": f.repo.repo_id, "type": f.repo.type}} for f in found[:size]
        ]
    return JSONResponse(items, headers=next_page(request, offset + size) if len(found) > size else None)
