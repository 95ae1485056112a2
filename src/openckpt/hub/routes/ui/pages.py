"""The web UI: server-rendered pages that work without JavaScript.

Included after the API routers, in this order: fixed paths (``/``, ``/models``, ``/login``...), repo pages
(``/datasets/{owner}/{name}...`` before ``/{owner}/{name}...``), and last the account pages (``/{name}``).
"""

from __future__ import annotations

from fastapi import APIRouter

from openckpt.hub.routes.ui import access as ui_access
from openckpt.hub.routes.ui import auth as ui_auth
from openckpt.hub.routes.ui import browse as ui_browse
from openckpt.hub.routes.ui import changes as ui_changes
from openckpt.hub.routes.ui import discussions as ui_discussions
from openckpt.hub.routes.ui import owner as ui_owner
from openckpt.hub.routes.ui import people as ui_people
from openckpt.hub.routes.ui import repo as ui_repo
from openckpt.hub.routes.ui import security as ui_security
from openckpt.hub.routes.ui import settings as ui_settings

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
