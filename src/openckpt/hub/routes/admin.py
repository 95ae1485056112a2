"""Storage accounting over HTTP: ``GET /api/admin/storage`` (hub admins), ``GET /api/{type}s/{repo}/storage``
(the repo's readers) and the admin page ``/admin/storage``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import ForbiddenError
from openckpt.hub.context import hub_of, int_param, optional_principal, repo_id_of, repo_type_of, require_principal
from openckpt.hub.routes.ui_common import PageRoute, page, viewer_of
from openckpt.hub.services import repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.storage_accounting import Accounting, account, account_repo

__all__ = ["pages", "router"]

router = APIRouter()
pages = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_ROWS = 50
"""Repos and xorbs the admin page lists (the largest)."""


def _require_admin(principal: Principal | None) -> None:
    if principal is None or not principal.is_admin:
        raise ForbiddenError("storage accounting is for hub administrators")


def _accounting(request: Request) -> Accounting:
    hub = hub_of(request)
    return account(hub.db, hub.store)


@router.get("/api/admin/storage")
async def storage(request: Request) -> dict[str, Any]:
    """Totals, per owner and per repo (largest first), and the ``xorbs`` (default 100) largest xorbs' reference
    counts."""
    _require_admin(await run_in_threadpool(require_principal, request))
    limit = int_param(request, "xorbs", 100)
    return (await run_in_threadpool(_accounting, request)).as_dict(xorbs=limit)


def _repo_storage(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        repo_pk = repo.id
    return account_repo(hub.db, hub.store, repo_pk).as_dict()


@router.get("/api/{plural}/{owner}/{name}/storage")
async def repo_storage(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    """One repo's logical and physical bytes (see :mod:`openckpt.hub.services.storage_accounting`)."""
    return await run_in_threadpool(_repo_storage, request, plural, owner, name)


@pages.get("/admin/storage")
async def storage_page(request: Request) -> Response:
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return RedirectResponse("/login?next=/admin/storage", status_code=303)
    _require_admin(viewer)
    report = (await run_in_threadpool(_accounting, request)).as_dict(xorbs=PAGE_ROWS)
    context = {"total": report["total"], "owners": report["owners"], "repos": report["repos"][:PAGE_ROWS],
               "more_repos": max(len(report["repos"]) - PAGE_ROWS, 0), "xorbs": report["xorbs"]}  # fmt: skip
    return page(request, "admin_storage.html", context, headers={"Cache-Control": "no-store"})
