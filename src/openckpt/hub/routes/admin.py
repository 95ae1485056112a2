"""Storage accounting over HTTP: ``GET /api/admin/storage`` (hub admins), ``GET /api/{type}s/{repo}/storage``
(the repo's readers), the admin page ``/admin/storage``, and the Hub's lists of a namespace's repos with their
storage (``HfApi.list_user_repos``, ``hf repos ls``): ``GET /api/settings/repositories`` (the caller's) and
``GET /api/organizations/{org}/settings/repositories`` (its members and hub admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import ForbiddenError
from openckpt.hub.context import Hub, int_param, next_page
from openckpt.hub.deps import HubDep, PrincipalDep, RepoDep, RepoRef, UserDep
from openckpt.hub.routes.ui.common import PageRoute, page, viewer_of
from openckpt.hub.services import repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.storage import namespace
from openckpt.hub.services.storage.accounting import Accounting, account, account_repo
from openckpt.hub.views import iso

__all__ = ["pages", "router"]

router = APIRouter()
pages = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_ROWS = 50
"""Repos and xorbs the admin page lists (the largest)."""
NAMESPACE_PAGE, NAMESPACE_MAX_PAGE = 100, 1000
"""Repos a page of a namespace's list holds: by default, and at most (its ``limit``)."""


def _require_admin(principal: Principal | None) -> None:
    if principal is None or not principal.is_admin:
        raise ForbiddenError("storage accounting is for hub administrators")


def _accounting(hub: Hub) -> Accounting:
    return account(hub.db, hub.store)


@router.get("/api/admin/storage")
async def storage(request: Request, hub: HubDep, principal: UserDep) -> dict[str, Any]:
    """Totals, per owner and per repo (largest first), and the ``xorbs`` (default 100) largest xorbs' reference
    counts."""
    _require_admin(principal)
    limit = int_param(request, "xorbs", 100)
    return (await run_in_threadpool(_accounting, hub)).as_dict(xorbs=limit)


def _repo_storage(hub: Hub, principal: Principal | None, repo_ref: RepoRef) -> dict[str, Any]:
    with hub.db.read() as session:
        repo_pk = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id).id
    return account_repo(hub.db, hub.store, repo_pk=repo_pk).as_dict()


@router.get("/api/{plural}/{owner}/{name}/storage")
async def repo_storage(hub: HubDep, principal: PrincipalDep, repo_ref: RepoDep) -> dict[str, Any]:
    """One repo's logical and physical bytes (see :mod:`openckpt.hub.services.storage.accounting`)."""
    return await run_in_threadpool(_repo_storage, hub, principal, repo_ref)


def _namespace_repos(request: Request, hub: Hub, principal: Principal, org: str | None) -> JSONResponse:
    owner_pk = namespace.namespace_owner(hub.db, principal, org=org)
    found = namespace.holdings(hub.db, hub.store, owner_pk=owner_pk)
    total = sum(h.storage for h in found)
    offset = int_param(request, "offset", 0)
    size = min(int_param(request, "limit", NAMESPACE_PAGE) or NAMESPACE_PAGE, NAMESPACE_MAX_PAGE)
    items = [
        {
            "id": h.usage.repo_id,
            "type": h.usage.type,
            "updatedAt": iso(h.updated_at),
            "visibility": "private" if h.private else "public",
            "storage": h.storage,
            "storagePercent": 100 * h.storage / total if total else 0.0,
        }
        for h in found[offset : offset + size]
    ]
    return JSONResponse(items, headers=next_page(request, offset + size) if len(found) > offset + size else None)


@router.get("/api/settings/repositories")
async def my_repositories(request: Request, hub: HubDep, principal: UserDep) -> JSONResponse:
    """The caller's repos (every type), the largest first: id, type, updatedAt, visibility, storage (its
    ``physicalBytes``) and storagePercent (of the namespace's total); paged by ``limit`` and ``Link``."""
    return await run_in_threadpool(_namespace_repos, request, hub, principal, None)


@router.get("/api/organizations/{org}/settings/repositories")
async def org_repositories(request: Request, hub: HubDep, principal: UserDep, org: str) -> JSONResponse:
    """As ``/api/settings/repositories``, for the repos of the organisation ``org``."""
    return await run_in_threadpool(_namespace_repos, request, hub, principal, org)


@pages.get("/admin/storage")
async def storage_page(request: Request, hub: HubDep) -> Response:
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return RedirectResponse("/login?next=/admin/storage", status_code=303)
    _require_admin(viewer)
    report = (await run_in_threadpool(_accounting, hub)).as_dict(xorbs=PAGE_ROWS)
    context = {
        "total": report["total"],
        "owners": report["owners"],
        "repos": report["repos"][:PAGE_ROWS],
        "more_repos": max(len(report["repos"]) - PAGE_ROWS, 0),
        "xorbs": report["xorbs"],
    }
    return page(request, "admin_storage.html", context, headers={"Cache-Control": "no-store"})
