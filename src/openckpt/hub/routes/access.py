"""Access requests of gated repos, at the URLs ``huggingface_hub`` calls (``list_pending_access_requests``,
``accept_access_request``, ``reject_access_request``, ``cancel_access_request``, ``grant_access``), plus
``POST .../user-access-request/request`` for a user to ask for access from a script (the web UI has a form)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from openckpt.hub.bodies import Invalid, JsonObject
from openckpt.hub.deps import DbDep, RepoDep, UserDep, json_body
from openckpt.hub.services import access

router = APIRouter()
PREFIX = "/api/{plural}/{owner}/{name}/user-access-request"


def _text(value: str | int | None) -> str | None:
    """A user name or request id, which clients may send as a number, as text."""
    return None if value is None else str(value)


class HandleBody(JsonObject):
    """``HfApi.accept_access_request`` and the like: the user (or request id) and the status to move it to."""

    user: Annotated[str | int | None, Invalid("user must be a string")] = None
    request_id: Annotated[str | int | None, Invalid("requestId must be a string")] = Field(None, alias="requestId")
    status: Any = None
    rejection_reason: Annotated[str | int | None, Invalid("rejectionReason must be a string")] = Field(
        None, alias="rejectionReason"
    )


class GrantBody(JsonObject):
    expected = "expected JSON {user}"
    user: Annotated[str | int, Invalid("user must be a string")]


class AskBody(JsonObject):
    fields: Annotated[dict[str, Any] | None, Invalid("fields must be a JSON object")] = None


@router.post(PREFIX + "/handle")
async def handle(
    db: DbDep, principal: UserDep, body: Annotated[HandleBody, Depends(json_body(HandleBody))], repo: RepoDep
) -> dict[str, Any]:
    await run_in_threadpool(
        access.handle_request,
        db,
        principal,
        repo_type=repo.type,
        repo_id=repo.id,
        user=_text(body.user),
        request_id=_text(body.request_id),
        status=str(body.status),
        reason=_text(body.rejection_reason),
    )
    return {}


@router.post(PREFIX + "/grant")
async def grant(
    db: DbDep, principal: UserDep, body: Annotated[GrantBody, Depends(json_body(GrantBody))], repo: RepoDep
) -> dict[str, Any]:
    user = str(body.user)
    await run_in_threadpool(access.grant_access, db, principal, repo_type=repo.type, repo_id=repo.id, user=user)
    return {"user": user, "status": "accepted"}


@router.post(PREFIX + "/request")
async def ask(
    db: DbDep, principal: UserDep, body: Annotated[AskBody, Depends(json_body(AskBody))], repo: RepoDep
) -> dict[str, Any]:
    status = await run_in_threadpool(
        access.request_access, db, principal, repo_type=repo.type, repo_id=repo.id, fields=body.fields or {}
    )
    return {"status": status}


@router.get(PREFIX + "/{status}")
def list_requests(db: DbDep, principal: UserDep, repo: RepoDep, status: str) -> JSONResponse:
    return JSONResponse(access.list_requests(db, principal, repo_type=repo.type, repo_id=repo.id, status=status))
