"""Web pages of likes and collections: the like button of a repo's header (a CSRF-protected form, no JavaScript)
and a collection's page, ``/collections/{owner}/{slug}``.

The header asks :func:`like_state` (a template global) for the button. Included before the UI's other pages, whose
``/{owner}/{name}...`` would otherwise take these paths.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from openckpt.hub.context import hub_of
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Repo
from openckpt.hub.deps import DbDep, RepoIdDep, ViewerDep
from openckpt.hub.routes.ui.common import ENV, PageRoute, csrf_token, page, repo_url, signed_in_form, viewer_of
from openckpt.hub.services.community import collections, likes
from openckpt.hub.services.community.collections import slug_of

__all__ = ["like_state", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PURPOSE = "like"


def like_state(request: Request, repo: Repo) -> dict[str, Any]:
    """What the like button of ``repo`` shows the viewer: the count, whether the viewer likes it, and its form."""
    viewer = viewer_of(request)
    liked = False
    if viewer is not None:
        with hub_of(request).db.read() as session:
            liked = likes.is_liked(session, viewer, repo=repo)
    return {
        "count": repo.likes,
        "liked": liked,
        "signed_in": viewer is not None,
        "csrf": csrf_token(request, PURPOSE) if viewer is not None else "",
        "action": f"{repo_url(repo)}/like",
    }


ENV.globals["like_state"] = like_state


async def _like(request: Request, db: Database, repo_type: str, repo_id: str) -> Response:
    viewer, form = await signed_in_form(request, PURPOSE)
    change = likes.unlike if form.get("action") == "unlike" else likes.like
    repo = await run_in_threadpool(change, db, viewer, repo_type, repo_id)
    return RedirectResponse(repo_url(repo), status_code=303)


@router.post("/datasets/{owner}/{name}/like")
async def like_dataset(request: Request, db: DbDep, repo_id: RepoIdDep) -> Response:
    return await _like(request, db, "dataset", repo_id)


@router.post("/spaces/{owner}/{name}/like")
async def like_space(request: Request, db: DbDep, repo_id: RepoIdDep) -> Response:
    return await _like(request, db, "space", repo_id)


@router.post("/{owner}/{name}/like")
async def like_model(request: Request, db: DbDep, repo_id: RepoIdDep) -> Response:
    return await _like(request, db, "model", repo_id)


@router.get("/collections/{owner}/{slug}")
def collection_page(request: Request, db: DbDep, viewer: ViewerDep, owner: str, slug: str) -> HTMLResponse:
    """A collection with the items the viewer may see, in order, with their notes."""
    with db.read() as session:
        found = collections.find_collection(session, viewer, slug=f"{owner}/{slug}")
        shown = collections.view(session, viewer, collection=found)
        context = {"found": shown, "collection": found, "slug": slug_of(found), "slug_of": slug_of}
        return page(request, "collection.html", context)
