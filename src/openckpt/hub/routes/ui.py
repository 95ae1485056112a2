"""The web UI: server-rendered pages that work without JavaScript.

Included after the API routers, in this order: fixed paths (``/``, ``/models``, ``/login``...), repo pages
(``/datasets/{owner}/{name}...`` before ``/{owner}/{name}...``), and last the account pages (``/{name}``).
"""

from __future__ import annotations

from fastapi import APIRouter

from openckpt.hub.routes import (
    ui_access,
    ui_auth,
    ui_browse,
    ui_changes,
    ui_discussions,
    ui_owner,
    ui_people,
    ui_repo,
    ui_security,
    ui_settings,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
_PARTS = (
    ui_auth.router,
    ui_people.router,
    ui_browse.router,
    ui_access.router,
    ui_security.router,
    ui_discussions.router,
    ui_changes.router,
    ui_owner.router,
    ui_settings.router,
    ui_repo.router,
)
for _part in (*_PARTS, ui_browse.accounts_router):
    router.include_router(_part)
