"""Access requests of gated repos, at the URLs ``huggingface_hub`` calls (``list_pending_access_requests``,
``accept_access_request``, ``reject_access_request``, ``cancel_access_request``, ``grant_access``), plus
``POST .../user-access-request/request`` for a user to ask for access from a script (the web UI has a form)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError
from openckpt.hub.bodies import read_json
from openckpt.hub.context import hub_of, repo_id_of, repo_type_of, require_principal
from openckpt.hub.services import access

router = APIRouter()
PREFIX = "/api/{plural}/{owner}/{name}/user-access-request"


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequestError("expected a JSON object")
    return body


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str | int):
        raise BadRequestError(f"{key} must be a string")
    return None if value is None else str(value)


@router.post(PREFIX + "/handle")
async def handle(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    principal = require_principal(request)
    body = await _body(request)
    await run_in_threadpool(
        access.handle_request,
        hub_of(request).db,
        principal,
        repo_type_of(plural),
        repo_id_of(owner, name),
        user=_optional_str(body, "user"),
        request_id=_optional_str(body, "requestId"),
        status=str(body.get("status")),
        reason=_optional_str(body, "rejectionReason"),
    )
    return {}


@router.post(PREFIX + "/grant")
async def grant(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    principal = require_principal(request)
    user = _optional_str(await _body(request), "user")
    if user is None:
        raise BadRequestError("expected JSON {user}")
    repo_type, repo_id = repo_type_of(plural), repo_id_of(owner, name)
    await run_in_threadpool(access.grant_access, hub_of(request).db, principal, repo_type, repo_id, user)
    return {"user": user, "status": "accepted"}


@router.post(PREFIX + "/request")
async def ask(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    principal = require_principal(request)
    fields = (await _body(request)).get("fields") or {}
    if not isinstance(fields, dict):
        raise BadRequestError("fields must be a JSON object")
    repo_type, repo_id = repo_type_of(plural), repo_id_of(owner, name)
    status = await run_in_threadpool(access.request_access, hub_of(request).db, principal, repo_type, repo_id, fields)
    return {"status": status}


@router.get(PREFIX + "/{status}")
def list_requests(request: Request, plural: str, owner: str, name: str, status: str) -> JSONResponse:
    principal = require_principal(request)
    rows = access.list_requests(hub_of(request).db, principal, repo_type_of(plural), repo_id_of(owner, name), status)
    return JSONResponse(rows)
