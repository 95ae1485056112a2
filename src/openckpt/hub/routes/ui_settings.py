"""A repo's settings page (``/{repo}/settings``): visibility, gating, access requests (review, grant, revoke),
rename or transfer, and deletion after typing the repo's name. Each form posts one ``action`` with a CSRF token, to
the services the API's routes call (``repos.update_settings``, ``access``, ``repo_move``, ``repos.delete_repo``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, ForbiddenError
from openckpt.hub.context import hub_of, repo_id_of
from openckpt.hub.routes.ui_common import PageRoute, csrf_token, page, repo_url, signed_in_form, viewer_of
from openckpt.hub.routes.ui_repo import _header
from openckpt.hub.routes.webhooks import notify
from openckpt.hub.services import access, repo_move, repos
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.webhook_delivery import repo_event

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PURPOSE = "repo-settings"


def settings_page(request: Request, repo_type: str) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    repo_id = repo_id_of(request.path_params["owner"], request.path_params["name"])
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(session, viewer, repo_type, repo_id, write=True)
        commit = resolve_revision(session, repo, repos.DEFAULT_BRANCH)
        base = repo_url(repo)
        header = _header(session, repo, repos.DEFAULT_BRANCH, commit, "settings", lambda r: base)
    requests: dict[str, list[dict[str, Any]]] = {}
    if repo.gated:
        for status in ("pending", "accepted", "rejected"):
            requests[status] = access.list_requests(hub.db, viewer, repo_type, repo_id, status)
    context = {
        **header,
        "requests": requests,
        "csrf": csrf_token(request, PURPOSE),
        "saved": request.query_params.get("saved", ""),
    }
    return page(request, "repo_settings.html", context)


async def update(request: Request, repo_type: str) -> Response:
    viewer, form = await signed_in_form(request, PURPOSE)
    if not viewer.can_write:
        raise ForbiddenError("this session uses a read token: sign in with a write token to change settings")
    repo_id = repo_id_of(request.path_params["owner"], request.path_params["name"])
    db = hub_of(request).db
    action = str(form.get("action") or "")
    url = f"/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}/settings"
    if action == "visibility":
        private = form.get("visibility") == "private"
        repo = await run_in_threadpool(
            repos.update_settings, db, viewer, repo_type, repo_id, private=private, gated=None
        )
        notify(request, repo_event(repo, "update", "repo.config", updated_config={"private": private}))
    elif action == "gating":
        mode = str(form.get("gated") or "off")
        gated: str | bool = mode if mode in ("auto", "manual") else False
        repo = await run_in_threadpool(repos.update_settings, db, viewer, repo_type, repo_id, private=None, gated=gated)
        notify(request, repo_event(repo, "update", "repo.config", updated_config={"gated": gated}))
    elif action in ("accepted", "rejected", "pending"):
        user = str(form.get("user") or "")
        await run_in_threadpool(
            lambda: access.handle_request(db, viewer, repo_type, repo_id, user=user, request_id=None, status=action)
        )
    elif action == "grant":
        user = str(form.get("user") or "").strip()
        await run_in_threadpool(access.grant_access, db, viewer, repo_type, repo_id, user)
    elif action == "move":
        to_id = str(form.get("to") or "").strip()
        repo = await run_in_threadpool(repo_move.move_repo, db, viewer, repo_type, repo_id, to_id)
        notify(request, repo_event(repo, "move", "repo", moved_from=repo_id))
        return RedirectResponse(f"{repo_url(repo)}/settings?saved=moved", status_code=303)
    elif action == "delete":
        if str(form.get("confirm") or "").strip() != repo_id:
            raise BadRequestError(f"type {repo_id} to confirm the deletion")
        repo = await run_in_threadpool(repos.delete_repo, db, viewer, repo_type, repo_id)
        notify(request, repo_event(repo, "delete", "repo"))
        return RedirectResponse(f"/{viewer.name}", status_code=303)
    else:
        raise BadRequestError("unknown settings action")
    return RedirectResponse(f"{url}?saved={action}", status_code=303)


def _endpoint(
    view: Callable[[Request, str], Any], repo_type: str, is_async: bool
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if is_async:
            result: Response = await view(request, repo_type)
            return result
        return await run_in_threadpool(view, request, repo_type)

    endpoint.__name__ = f"{view.__name__}_{repo_type}"
    return endpoint


for _prefix, _type in (("/datasets", "dataset"), ("", "model")):
    router.add_api_route(
        f"{_prefix}/{{owner}}/{{name}}/settings", _endpoint(settings_page, _type, False), methods=["GET"]
    )
    router.add_api_route(f"{_prefix}/{{owner}}/{{name}}/settings", _endpoint(update, _type, True), methods=["POST"])
