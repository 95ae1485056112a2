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

from openckpt.hub.context import int_param, next_page
from openckpt.hub.deps import DbDep, PrincipalDep, RepoDep, UserDep
from openckpt.hub.services.community import likes
from openckpt.hub.views import iso

__all__ = ["router"]

router = APIRouter()
PAGE, MAX_PAGE = 100, 1000
"""Entries a page of likers or liked repos holds: by default, and at most (its ``limit``)."""


@router.post("/api/{plural}/{owner}/{name}/like")
async def like(db: DbDep, principal: UserDep, repo: RepoDep) -> dict[str, Any]:
    liked = await run_in_threadpool(likes.like, db, principal, repo.type, repo.id)
    return {"likes": liked.likes}


@router.delete("/api/{plural}/{owner}/{name}/like")
async def unlike(db: DbDep, principal: UserDep, repo: RepoDep) -> dict[str, Any]:
    unliked = await run_in_threadpool(likes.unlike, db, principal, repo.type, repo.id)
    return {"likes": unliked.likes}


def _page(request: Request) -> tuple[int, int]:
    return int_param(request, "offset", 0), min(int_param(request, "limit", PAGE) or PAGE, MAX_PAGE)


@router.get("/api/{plural}/{owner}/{name}/likers")
def likers(request: Request, db: DbDep, principal: PrincipalDep, repo: RepoDep) -> JSONResponse:
    """The accounts that like the repo, as ``User`` parses them; anyone who sees the repo may ask."""
    offset, size = _page(request)
    with db.read() as session:
        found = likes.likers(session, principal, repo_type=repo.type, repo_id=repo.id, offset=offset, limit=size + 1)
        items = [
            {"user": a.name, "fullname": a.fullname or a.name, "avatarUrl": "", "type": a.kind} for a in found[:size]
        ]
    return JSONResponse(items, headers=next_page(request, offset + size) if len(found) > size else None)


@router.get("/api/users/{username}/likes")
def liked(request: Request, db: DbDep, principal: PrincipalDep, username: str) -> JSONResponse:
    """The repos a user likes that the caller may see: ``[{createdAt, repo: {name, type}}]``."""
    offset, size = _page(request)
    with db.read() as session:
        found = likes.liked_repos(session, principal, user=username, offset=offset, limit=size + 1)
        items = [
            {"createdAt": iso(f.liked_at), "repo": {"name": f.repo.repo_id, "type": f.repo.type}} for f in found[:size]
        ]
    return JSONResponse(items, headers=next_page(request, offset + size) if len(found) > size else None)
