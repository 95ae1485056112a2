"""Xet tokens: ``xet-read-token`` / ``xet-write-token`` hand a client the CAS URL and a token scoped to one repo."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from openckpt.hub.context import hub_of, optional_principal, repo_id_of, repo_type_of, require_principal, rev_and_path
from openckpt.hub.services import access, pull_requests, repos
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.xet_tokens import CAS_PATH, issue_token

router = APIRouter()

MIN_TTL = 15 * 60
"""Clients refresh tokens shortly before they expire and never on a 401: never hand out short-lived ones."""


def _token(request: Request, plural: str, owner: str, name: str, scope: str) -> JSONResponse:
    hub = hub_of(request)
    rev, _ = rev_and_path(request, 5)
    create_pr = request.query_params.get("create_pr", "").lower() in ("1", "true")
    write = scope == "write"
    principal = require_principal(request) if write else optional_principal(request)
    with hub.db.read() as session:
        proposing = write and (create_pr or pull_requests.pr_num(rev) is not None)  # a pull request's files
        if proposing:
            repo = pull_requests.find_uploadable(
                session, principal, repo_type_of(plural), repo_id_of(owner, name), proposing=True
            )
        else:
            repo = repos.find_repo(session, principal, repo_type_of(plural), repo_id_of(owner, name), write=write)
        if not write:
            access.check_download(session, principal, repo, "")
        if not (create_pr and rev == "None"):  # huggingface_hub asks for `None` when it opens a pull request
            resolve_revision(session, repo, rev)
        repo_pk = repo.id
    ttl = max(hub.settings.signed_url_ttl, MIN_TTL)
    minted_by = principal.token_id if principal is not None else None  # its revocation ends the Xet token
    token, expires = issue_token(hub.settings.secret, scope, repo_pk, ttl, minted_by=minted_by)
    cas_url = str(request.base_url).rstrip("/") + CAS_PATH
    headers = {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(expires)}
    return JSONResponse({"accessToken": token, "exp": expires, "casUrl": cas_url}, headers=headers)


@router.get("/api/{plural}/{owner}/{name}/xet-read-token/{rest:path}")
def read_token(request: Request, plural: str, owner: str, name: str, rest: str) -> JSONResponse:
    return _token(request, plural, owner, name, "read")


@router.get("/api/{plural}/{owner}/{name}/xet-write-token/{rest:path}")
def write_token(request: Request, plural: str, owner: str, name: str, rest: str) -> JSONResponse:
    return _token(request, plural, owner, name, "write")
