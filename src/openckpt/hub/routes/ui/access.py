"""The access form of a gated repo on its page: the card's ``extra_gated_*`` fields, posted with a CSRF token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, UnauthorizedError
from openckpt.governance.cards import gate_fields
from openckpt.hub.context import Hub
from openckpt.hub.db.models import Repo
from openckpt.hub.deps import HubDep, RepoIdDep
from openckpt.hub.routes.ui.common import PageRoute, check_csrf, csrf_token, repo_url, viewer_of
from openckpt.hub.services import access
from openckpt.hub.services.repos import find_repo

__all__ = ["gate_context", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PURPOSE = "access"


def gate_context(session: Session, request: Request, repo: Repo) -> dict[str, Any] | None:
    """What the repo page shows of the gate: None when the viewer may download, else the form or the status."""
    viewer = viewer_of(request)
    if access.has_access(session, viewer, repo=repo):
        return None
    card = repo.card_data or {}
    return {
        "signed_in": viewer is not None,
        "status": access.request_status(session, viewer, repo=repo),
        "heading": card.get("extra_gated_heading")
        or f"You need to agree to share your contact information to access this {repo.type}",
        "prompt": card.get("extra_gated_prompt") or "",
        "description": card.get("extra_gated_description") or "",
        "button": card.get("extra_gated_button_content") or "Agree and access repository",
        "fields": list(enumerate(gate_fields(card))),
        "manual": repo.gated == "manual",
        "csrf": csrf_token(request, PURPOSE) if viewer is not None else "",
        "action": f"{repo_url(repo)}/ask-access",
    }


async def _ask(request: Request, hub: Hub, repo_type: str, repo_id: str) -> Response:
    form = await request.form()
    check_csrf(request, form.get("csrf"), PURPOSE)
    viewer = viewer_of(request)
    if viewer is None:
        raise UnauthorizedError("Sign in to request access")
    with hub.db.read() as session:
        repo = find_repo(session, viewer, repo_type=repo_type, repo_id=repo_id)
        spec = gate_fields(repo.card_data or {})
        url = repo_url(repo)
    fields: dict[str, Any] = {}
    for i, field in enumerate(spec):
        value = form.get(f"field{i}")
        if field.type == "checkbox":
            if value != "on":
                raise BadRequestError(f"Tick {field.name!r} to request access")
            fields[field.name] = True
            continue
        text = str(value or "").strip()[:1000]
        if not text:
            raise BadRequestError(f"Fill in {field.name!r} to request access")
        if field.options and text not in field.options:
            raise BadRequestError(f"Choose one of the options of {field.name!r}")
        fields[field.name] = text
    await run_in_threadpool(access.request_access, hub.db, viewer, repo_type=repo_type, repo_id=repo_id, fields=fields)
    return RedirectResponse(url, status_code=303)


@router.post("/datasets/{owner}/{name}/ask-access")
async def ask_dataset(request: Request, hub: HubDep, repo_id: RepoIdDep) -> Response:
    return await _ask(request, hub, "dataset", repo_id)


@router.post("/{owner}/{name}/ask-access")
async def ask_model(request: Request, hub: HubDep, repo_id: RepoIdDep) -> Response:
    return await _ask(request, hub, "model", repo_id)
