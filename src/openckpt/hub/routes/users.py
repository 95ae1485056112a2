"""The caller (``/api/whoami-v2``), users and organisations (``/api/users/{user}/overview``,
``/api/organizations/{org}/overview`` and ``/api/organizations/{org}/members``) and ``/api/validate-yaml``.

Registered before the repos routes, whose ``/api/{plural}/{owner}/{name}`` would otherwise take these paths."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from openckpt.hub.bodies import read_json
from openckpt.hub.context import int_param, next_page
from openckpt.hub.deps import DbDep, PrincipalDep, UserDep
from openckpt.hub.services import people
from openckpt.hub.services.cards import validate_card
from openckpt.hub.views import member_json, org_overview_json, user_overview_json

router = APIRouter()
MEMBERS_PAGE, MEMBERS_MAX_PAGE = 500, 1000
"""Members a page of ``/api/organizations/{org}/members`` holds: by default, and at most (its ``limit``)."""


@router.get("/api/whoami-v2")
def whoami(db: DbDep, principal: UserDep) -> dict[str, Any]:
    orgs = people.orgs_of(db, principal)
    return {
        "type": "user",
        "id": str(principal.account_id),
        "name": principal.name,
        "fullname": principal.fullname,
        "isPro": False,
        "canPay": False,
        "emailVerified": True,
        "orgs": [
            {"type": "org", "name": o.name, "fullname": o.fullname, "roleInOrg": principal.orgs[o.id]} for o in orgs
        ],
        "auth": {
            "type": "access_token",
            "accessToken": {"displayName": principal.token_name, "role": principal.token_role},
        },
    }


@router.get("/api/users/{username}/overview")
def user_overview(db: DbDep, principal: PrincipalDep, username: str) -> dict[str, Any]:
    """The user, counting only the repos the caller may see; anyone may ask."""
    with db.read() as session:
        found = people.overview(session, principal, name=username, kind="user")
        return user_overview_json(found)


@router.get("/api/organizations/{org}/overview")
def org_overview(db: DbDep, principal: PrincipalDep, org: str) -> dict[str, Any]:
    """The organisation, counting only the repos the caller may see; anyone may ask."""
    with db.read() as session:
        found = people.overview(session, principal, name=org, kind="org")
        return org_overview_json(found)


@router.get("/api/organizations/{org}/members")
def org_members(request: Request, db: DbDep, principal: PrincipalDep, org: str) -> JSONResponse:
    """The organisation's members by name, paged by ``limit`` and ``Link``; roles for its members and hub admins."""
    offset = int_param(request, "offset", 0)
    size = min(int_param(request, "limit", MEMBERS_PAGE) or MEMBERS_PAGE, MEMBERS_MAX_PAGE)
    with db.read() as session:
        found = people.list_members(session, principal, org_name=org, offset=offset, limit=size + 1)
        items = [member_json(m) for m in found[:size]]
    return JSONResponse(items, headers=next_page(request, offset + size) if len(found) > size else None)


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request) -> JSONResponse:
    body = await read_json(request)  # not a model: what does not fit is answered in the Hub's shape of this route
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, str):
        return JSONResponse({"errors": [{"message": "expected JSON {content, repoType}"}], "warnings": []}, 400)
    _, errors, warnings = validate_card(content)
    payload = {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]}
    return JSONResponse(payload, status_code=400 if errors else 200)
