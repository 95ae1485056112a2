"""Xet tokens: ``xet-read-token`` / ``xet-write-token`` hand a client the CAS URL and a token scoped to one repo."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from openckpt.hub.context import Hub, rev_and_path
from openckpt.hub.deps import HubDep, PrincipalDep, RepoDep, RepoRef, UserDep
from openckpt.hub.services import preflight
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.xet.tokens import CAS_PATH, issue_token

router = APIRouter()

MIN_TTL = 15 * 60
"""Clients refresh tokens shortly before they expire and never on a 401: never hand out short-lived ones."""


def _token(request: Request, hub: Hub, principal: Principal | None, repo: RepoRef, *, scope: str) -> JSONResponse:
    rev, _ = rev_and_path(request, 5)
    create_pr = request.query_params.get("create_pr", "").lower() in ("1", "true")
    repo_pk = preflight.xet_token_repo(
        hub.db,
        principal,
        repo_type=repo.type,
        repo_id=repo.id,
        revision=rev,
        write=scope == "write",
        create_pr=create_pr,
    )
    ttl = max(hub.settings.signed_url_ttl, MIN_TTL)
    minted_by = principal.token_id if principal is not None else None  # its revocation ends the Xet token
    token, expires = issue_token(hub.settings.secret, scope, repo_pk, ttl, minted_by=minted_by)
    cas_url = str(request.base_url).rstrip("/") + CAS_PATH
    headers = {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(expires)}
    return JSONResponse({"accessToken": token, "exp": expires, "casUrl": cas_url}, headers=headers)


@router.get("/api/{plural}/{owner}/{name}/xet-read-token/{rest:path}")
def read_token(request: Request, hub: HubDep, principal: PrincipalDep, repo: RepoDep) -> JSONResponse:
    return _token(request, hub, principal, repo, scope="read")


@router.get("/api/{plural}/{owner}/{name}/xet-write-token/{rest:path}")
def write_token(request: Request, hub: HubDep, user: UserDep, repo: RepoDep) -> JSONResponse:
    return _token(request, hub, user, repo, scope="write")
