"""The web UI: server-rendered pages that work without JavaScript.

Included after the API routers, in this order: fixed paths (``/``, ``/models``, ``/login``...), repo pages
(``/datasets/{owner}/{name}...`` before ``/{owner}/{name}...``), and last the account pages (``/{name}``).
"""

from __future__ import annotations

from fastapi import APIRouter

from openckpt.hub.routes import ui_auth, ui_browse, ui_repo

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _part in (ui_auth.router, ui_browse.router, ui_repo.router, ui_browse.accounts_router):
    router.include_router(_part)
