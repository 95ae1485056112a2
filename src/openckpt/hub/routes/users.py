"""``/api/whoami-v2`` and ``/api/validate-yaml``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from openckpt.hub.context import hub_of, require_principal
from openckpt.hub.db.models import Account
from openckpt.hub.services.cards import validate_card

router = APIRouter()


@router.get("/api/whoami-v2")
def whoami(request: Request) -> dict[str, Any]:
    principal = require_principal(request)
    with hub_of(request).db.read() as session:
        orgs = (
            session.scalars(select(Account).where(Account.id.in_(list(principal.orgs)))).all() if principal.orgs else []
        )
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


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request) -> JSONResponse:
    body = await request.json()
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, str):
        return JSONResponse({"errors": [{"message": "expected JSON {content, repoType}"}], "warnings": []}, 400)
    _, errors, warnings = validate_card(content)
    payload = {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]}
    return JSONResponse(payload, status_code=400 if errors else 200)
