"""A repo's settings page (``/{repo}/settings``): visibility, default branch, gating, the access form's fields,
access requests (review, grant, revoke), rename or transfer, and deletion after typing the repo's name. Each form
posts one ``action`` with a CSRF token, to the services the API's routes call (``repos.update_settings``,
``access``, ``repo_move``, ``repos.delete_repo``); the access form is the card's ``extra_gated_*`` metadata, so
saving it commits README.md on the default branch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, ForbiddenError, FormatError
from openckpt.governance.cards import GATE_FIELD_TYPES, GateField, gate_fields, set_gate_form
from openckpt.hub.context import Hub, repo_id_of
from openckpt.hub.db.engine import Database
from openckpt.hub.deps import HubDep
from openckpt.hub.routes.ui.common import PageRoute, csrf_token, page, repo_url, signed_in_form, viewer_of
from openckpt.hub.routes.ui.owner import MAX_EDIT, _commit
from openckpt.hub.routes.ui.repo import _header
from openckpt.hub.routes.webhooks import change_events, named_event
from openckpt.hub.services import access, pages, repo_move, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commit_flow import NewFile
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.trees import file_at
from openckpt.hub.services.webhooks.delivery import Event, repo_event

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PURPOSE = "repo-settings"
MAX_GATE_FIELDS = 30


def settings_page(request: Request, hub: Hub, repo_type: str) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    repo_id = repo_id_of(request.path_params["owner"], request.path_params["name"])
    with hub.db.read() as session:
        repo = repos.find_repo(session, viewer, repo_type=repo_type, repo_id=repo_id, write=True)
        commit = resolve_revision(session, repo, rev=repo.default_branch)
        base = repo_url(repo)
        header = _header(session, repo, repo.default_branch, commit, "settings", lambda r: base)
    requests: dict[str, list[dict[str, Any]]] = {}
    if repo.gated:
        for status in ("pending", "accepted", "rejected"):
            requests[status] = access.list_requests(hub.db, viewer, repo_type=repo_type, repo_id=repo_id, status=status)
    card = repo.card_data or {}
    context = {
        **header,
        "gate_fields": gate_fields(card),
        "gate_heading": card.get("extra_gated_heading") or "",
        "gate_prompt": card.get("extra_gated_prompt") or "",
        "gate_types": GATE_FIELD_TYPES,
        "requests": requests,
        "csrf": csrf_token(request, PURPOSE),
        "saved": request.query_params.get("saved", ""),
    }
    return page(request, "repo_settings.html", context)


async def _configure(
    request: Request,
    db: Database,
    viewer: Principal,
    repo_type: str,
    repo_id: str,
    config: dict[str, Any],
    **changes: Any,
) -> None:
    """Change settings (``repos.update_settings``' keywords); their ``repo.config`` event is written in the change's
    own transaction."""

    def event(session: Session) -> Event:
        repo = repos.find_repo(session, viewer, repo_type=repo_type, repo_id=repo_id)
        return repo_event(repo, "update", scope="repo.config", updated_config=config)

    with change_events(request, event):
        await run_in_threadpool(
            partial(repos.update_settings, db, viewer, repo_type=repo_type, repo_id=repo_id, **changes)
        )


def _deletion(db: Database, viewer: Principal, repo_type: str, repo_id: str) -> Event:
    """The event of deleting the repo, as it is before (its row will be gone)."""
    with db.read() as session:
        return repo_event(
            repos.find_repo(session, viewer, repo_type=repo_type, repo_id=repo_id, write=True), "delete", scope="repo"
        )


async def update(request: Request, hub: Hub, repo_type: str) -> Response:
    viewer, form = await signed_in_form(request, PURPOSE)
    if not viewer.can_write:
        raise ForbiddenError("this session uses a read token: sign in with a write token to change settings")
    repo_id = repo_id_of(request.path_params["owner"], request.path_params["name"])
    db = hub.db
    action = str(form.get("action") or "")
    url = f"/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}/settings"
    if action == "visibility":
        private = form.get("visibility") == "private"
        await _configure(request, db, viewer, repo_type, repo_id, {"private": private}, private=private, gated=None)
    elif action == "default-branch":
        branch = str(form.get("branch") or "").strip()
        changes = {"private": None, "gated": None, "default_branch": branch, "store": hub.store}
        await _configure(request, db, viewer, repo_type, repo_id, {"defaultBranch": branch}, **changes)
    elif action == "gating":
        mode = str(form.get("gated") or "off")
        gated: str | bool = mode if mode in ("auto", "manual") else False
        await _configure(request, db, viewer, repo_type, repo_id, {"gated": gated}, private=None, gated=gated)
    elif action == "gate-form":
        commit_id = await _save_gate_form(request, hub, viewer, form, repo_type, repo_id)
        return RedirectResponse(f"{url}?saved=gate-form&commit={commit_id}", status_code=303)
    elif action in ("accepted", "rejected", "pending"):
        user = str(form.get("user") or "")
        await run_in_threadpool(
            lambda: access.handle_request(
                db, viewer, repo_type=repo_type, repo_id=repo_id, user=user, request_id=None, status=action
            )
        )
    elif action == "grant":
        user = str(form.get("user") or "").strip()
        await run_in_threadpool(access.grant_access, db, viewer, repo_type=repo_type, repo_id=repo_id, user=user)
    elif action == "move":
        to_id = str(form.get("to") or "").strip()
        with change_events(
            request, named_event(repo_type, repo_move.parse_destination(repo_type, to_id), "move", moved_from=repo_id)
        ):
            repo = await run_in_threadpool(
                repo_move.move_repo, db, viewer, repo_type=repo_type, from_id=repo_id, to_id=to_id
            )
        return RedirectResponse(f"{repo_url(repo)}/settings?saved=moved", status_code=303)
    elif action == "delete":
        if str(form.get("confirm") or "").strip() != repo_id:
            raise BadRequestError(f"type {repo_id} to confirm the deletion")
        event = await run_in_threadpool(_deletion, db, viewer, repo_type, repo_id)
        with change_events(request, lambda _: event):  # written in the deletion's transaction
            await run_in_threadpool(repos.delete_repo, db, viewer, repo_type=repo_type, repo_id=repo_id)
        return RedirectResponse(f"/{viewer.name}", status_code=303)
    else:
        raise BadRequestError("unknown settings action")
    return RedirectResponse(f"{url}?saved={action}", status_code=303)


def _gate_form_fields(form: Any) -> list[GateField]:
    """The fields a settings form lists (``field-N-name``, ``-type``, ``-options``, ``-remove``), in order."""
    fields: list[GateField] = []
    for i in range(min(int(str(form.get("fields") or 0) or 0), MAX_GATE_FIELDS + 1)):
        name = str(form.get(f"field-{i}-name") or "").strip()[:200]
        if not name or form.get(f"field-{i}-remove") == "on":
            continue
        kind = str(form.get(f"field-{i}-type") or "text")
        options = tuple(o.strip() for o in str(form.get(f"field-{i}-options") or "").split(",") if o.strip())
        if any(f.name == name for f in fields):
            raise BadRequestError(f"two fields are named {name!r}")
        fields.append(GateField(name, kind, options if kind == "select" else ()))
    if len(fields) > MAX_GATE_FIELDS:
        raise BadRequestError(f"an access form has at most {MAX_GATE_FIELDS} fields")
    return fields


async def _save_gate_form(
    request: Request, hub: Hub, viewer: Principal, form: Any, repo_type: str, repo_id: str
) -> str:
    """Commit README.md with the access form the settings form describes, on the default branch; the commit id."""
    fields = _gate_form_fields(form)
    with hub.db.read() as session:
        repo = repos.find_repo(session, viewer, repo_type=repo_type, repo_id=repo_id, write=True)
        branch = repo.default_branch
        head = resolve_revision(session, repo, rev=branch)
        entry = file_at(session, head.tree_id, path="README.md")
    text = None if entry is None else await run_in_threadpool(pages.read_text, hub.store, entry, limit=MAX_EDIT)
    if entry is not None and text is None:
        raise BadRequestError("README.md is not a text file: the access form cannot be written into it")
    try:
        new = set_gate_form(
            text,
            fields,
            heading=str(form.get("heading") or "").strip()[:500],
            prompt=str(form.get("prompt") or "").strip()[:5000],
        )
    except FormatError as e:
        raise BadRequestError(str(e)) from e
    change = NewFile("README.md", new.encode())
    title = "Update the access form" if fields else "Remove the access form's fields"
    return await _commit(request, viewer, repo, branch, [change], title=title, message="", parent=head.id)


def _endpoint(
    view: Callable[[Request, Hub, str], Any], repo_type: str, is_async: bool
) -> Callable[[Request, Hub], Awaitable[Response]]:
    async def endpoint(request: Request, hub: HubDep) -> Response:
        if is_async:
            result: Response = await view(request, hub, repo_type)
            return result
        return await run_in_threadpool(view, request, hub, repo_type)

    endpoint.__name__ = f"{view.__name__}_{repo_type}"
    return endpoint


for _prefix, _type in (("/datasets", "dataset"), ("", "model")):
    router.add_api_route(
        f"{_prefix}/{{owner}}/{{name}}/settings", _endpoint(settings_page, _type, False), methods=["GET"]
    )
    router.add_api_route(f"{_prefix}/{{owner}}/{{name}}/settings", _endpoint(update, _type, True), methods=["POST"])
