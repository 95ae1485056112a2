"""Repos: create, delete, move, duplicate, settings, list and search, info, refs, commit history, branches and tags."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, ConflictError
from openckpt.hub.bodies import read_json
from openckpt.hub.context import (
    hub_of,
    int_param,
    next_page,
    optional_principal,
    repo_id_of,
    repo_type_of,
    require_principal,
    rev_and_path,
)
from openckpt.hub.db.models import Ref, Repo
from openckpt.hub.error_response import header_text
from openckpt.hub.routes.webhooks import notify
from openckpt.hub.services import gate, provenance, repo_duplicate, repo_move, repos
from openckpt.hub.services.commits import commit_chain, resolve_revision
from openckpt.hub.services.trees import read_tree
from openckpt.hub.services.webhook_delivery import RefUpdate, repo_event
from openckpt.hub.views import commit_json, repo_json, repo_security_json
from openckpt.protocol import ERROR_CODE, ERROR_MESSAGE, REPO_TYPE_PREFIX

router = APIRouter()
PAGE = 1000
COMMITS_PAGE = 50


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _json_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequestError("expected a JSON object")
    return body


@router.post("/api/repos/create")
async def create(request: Request) -> JSONResponse:
    principal = require_principal(request)
    body = _json_body(await read_json(request))
    repo_type = body.get("type") or "model"
    private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
    name, organization = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not isinstance(repo_type, str):
        raise BadRequestError("missing repo name: expected JSON {name, organization?, type?, private?}")
    if organization is not None and not isinstance(organization, str):
        raise BadRequestError("organization must be an account name")
    hub = hub_of(request)
    repo_id = f"{organization or principal.name}/{name}"
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX.get(repo_type, '')}{repo_id}"
    try:
        repo = await run_in_threadpool(
            repos.create_repo, hub.db, hub.store, principal, repo_type, name, organization, private
        )
    except ConflictError as e:  # the client reads the url of the existing repo from the 409 (exist_ok=True)
        headers = {ERROR_CODE: e.code, ERROR_MESSAGE: header_text(str(e))}
        return JSONResponse({"error": str(e), "url": url}, 409, headers=headers)
    notify(request, repo_event(repo, "create", "repo"))
    return JSONResponse({"url": url, "name": repo_id, "id": str(repo.id)})


@router.delete("/api/repos/delete")
async def delete(request: Request) -> Response:
    principal = require_principal(request)
    body = _json_body(await read_json(request))
    name, owner = body.get("name"), body.get("organization") or principal.name
    if not isinstance(name, str) or not isinstance(owner, str):
        raise BadRequestError("expected JSON {name, organization?, type?}")
    repo_id = repo_id_of(owner, name)
    repo = await run_in_threadpool(
        repos.delete_repo, hub_of(request).db, principal, body.get("type") or "model", repo_id
    )
    notify(request, repo_event(repo, "delete", "repo"))
    return Response(status_code=200)


@router.post("/api/repos/move")
async def move(request: Request) -> JSONResponse:
    """Rename or transfer a repo (``HfApi.move_repo``); its old name redirects reads to the new one."""
    principal = require_principal(request)
    body = _json_body(await read_json(request))
    from_repo, to_repo, repo_type = body.get("fromRepo"), body.get("toRepo"), body.get("type") or "model"
    if not isinstance(from_repo, str) or not isinstance(to_repo, str) or not isinstance(repo_type, str):
        raise BadRequestError("expected JSON {fromRepo, toRepo, type?}")
    repo = await run_in_threadpool(repo_move.move_repo, hub_of(request).db, principal, repo_type, from_repo, to_repo)
    notify(request, repo_event(repo, "move", "repo", moved_from=from_repo))
    repo_id = repo.repo_id
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX.get(repo_type, '')}{repo_id}"
    return JSONResponse({"url": url, "name": repo_id})


@router.post("/api/{plural}/{owner}/{name}/duplicate")
async def duplicate(request: Request, plural: str, owner: str, name: str) -> JSONResponse:
    """Copy a repo with its whole history (``HfApi.duplicate_repo``). No bytes are copied, so no files are pending;
    Space hardware, secrets and variables are ignored (this hub runs no Spaces)."""
    principal = require_principal(request)
    body = _json_body(await read_json(request, optional=True))
    repository, visibility = body.get("repository"), body.get("visibility")
    if repository is not None and not isinstance(repository, str):
        raise BadRequestError("repository must be a repo id: expected JSON {repository, visibility?}")
    if visibility not in (None, "public", "private"):
        raise BadRequestError("visibility must be 'public' or 'private'")
    private = body.get("private") if visibility is None else visibility == "private"
    if private is not None and not isinstance(private, bool):
        raise BadRequestError("private must be true or false")
    repo_type, from_id = repo_type_of(plural), repo_id_of(owner, name)
    to_id = repo_duplicate.destination(principal, from_id, repository)
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX.get(repo_type, '')}{to_id}"
    hub = hub_of(request)
    try:
        repo = await run_in_threadpool(
            repo_duplicate.duplicate_repo,
            hub.db,
            hub.store,
            hub.settings,
            principal,
            repo_type,
            from_id,
            to_id,
            private=private,
        )
    except ConflictError as e:  # the client reads the url of the existing repo from the 409 (exist_ok=True)
        headers = {ERROR_CODE: e.code, ERROR_MESSAGE: header_text(str(e))}
        return JSONResponse({"error": str(e), "url": url}, 409, headers=headers)
    notify(request, repo_event(repo, "create", "repo"))
    return JSONResponse({"url": url, "name": to_id, "filesCopyPending": False})


@router.put("/api/{plural}/{owner}/{name}/settings")
async def settings(request: Request, plural: str, owner: str, name: str) -> Response:
    principal = require_principal(request)
    body = _json_body(await read_json(request))
    private = body.get("private")
    if "visibility" in body:
        private = body["visibility"] == "private"
    repo = await run_in_threadpool(
        repos.update_settings,
        hub_of(request).db,
        principal,
        repo_type_of(plural),
        repo_id_of(owner, name),
        private=private,
        gated=body.get("gated"),
    )
    changed = {"private": private, "gated": body.get("gated")}
    notify(
        request,
        repo_event(repo, "update", "repo.config", updated_config={k: v for k, v in changed.items() if v is not None}),
    )
    return Response(status_code=200)


@router.get("/api/{plural}")
def list_repos(request: Request, plural: str) -> JSONResponse:
    repo_type = repo_type_of(plural)
    q = request.query_params
    offset = int_param(request, "offset", 0)
    page = min(int_param(request, "limit", PAGE) or PAGE, PAGE)  # ``limit`` is the page size, as on the Hub
    query = repos.ListQuery(
        search=q.get("search"),
        author=q.get("author"),
        filters=tuple(q.getlist("filter")),
        sort=q.get("sort"),
        descending=q.get("direction", "-1") == "-1",
        limit=page + 1,
        offset=offset,
    )
    full, card = _flag(q.get("full")), _flag(q.get("cardData")) or "cardData" in q.getlist("expand")
    principal = optional_principal(request)
    hub = hub_of(request)
    with hub.db.read() as session:
        found = repos.list_repos(session, principal, repo_type, query)
        items = []
        for repo in found[:page]:
            if full:
                head = resolve_revision(session, repo, repos.DEFAULT_BRANCH)
                entries = list(read_tree(session, head.tree_id).values())
                items.append(repo_json(repo, head=head, entries=entries, card=card))
            else:
                items.append(repo_json(repo, card=card))
    return JSONResponse(items, headers=next_page(request, offset + page) if len(found) > page else None)


@router.get("/api/{plural}/{owner}/{name}")
def info(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    return _info(request, plural, owner, name, repos.DEFAULT_BRANCH)


@router.get("/api/{plural}/{owner}/{name}/revision/{rest:path}")
def info_at_revision(request: Request, plural: str, owner: str, name: str, rest: str) -> dict[str, Any]:
    rev, _ = rev_and_path(request, 5)
    return _info(request, plural, owner, name, rev)


def _info(request: Request, plural: str, owner: str, name: str, rev: str) -> dict[str, Any]:
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        head = resolve_revision(session, repo, rev)
        entries = list(read_tree(session, head.tree_id).values())
        data = repo_json(repo, head=head, entries=entries, blobs=_flag(request.query_params.get("blobs")))
        if _flag(request.query_params.get("securityStatus")):  # trust: scan results per file
            found = gate.statuses(session, hub.settings, repo.id, entries)
            rules = gate.rules_of(session, hub.settings, repo).to_dict()
            data["securityRepoStatus"] = repo_security_json(found, rules)
        if repo.type == "model" and "lineageVerification" in request.query_params.getlist("expand"):
            data["lineageVerification"] = provenance.compact(provenance.cached(hub.settings, head.id))
        return data


@router.get("/api/{plural}/{owner}/{name}/auth-check")
@router.get("/api/{plural}/{owner}/{name}/auth-check/write")
def auth_check(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    """200 if the caller may read (or, on ``/write``, write) the repo; the usual 404 / 403 otherwise."""
    write = request.url.path.endswith("/write")
    with hub_of(request).db.read() as session:
        principal = require_principal(request) if write else optional_principal(request)
        repos.find_repo(session, principal, repo_type_of(plural), repo_id_of(owner, name), write=write)
    return {"ok": True}


@router.get("/api/{plural}/{owner}/{name}/refs")
def refs(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        rows = session.scalars(select(Ref).where(Ref.repo_id == repo.id).order_by(Ref.name)).all()
    out: dict[str, Any] = {"branches": [], "tags": [], "converts": []}
    prs: list[dict[str, str]] = []
    for ref in rows:
        if ref.kind == "pr":  # a pull request's refs/pr/N
            prs.append({"name": ref.name, "ref": ref.name, "targetCommit": ref.commit_id})
            continue
        kind, prefix = ("branches", "refs/heads/") if ref.kind == "branch" else ("tags", "refs/tags/")
        out[kind].append({"name": ref.name, "ref": prefix + ref.name, "targetCommit": ref.commit_id})
    if _flag(request.query_params.get("include_prs")):
        out["pullRequests"] = prs
    return out


@router.get("/api/{plural}/{owner}/{name}/commits/{rest:path}")
def commits(request: Request, plural: str, owner: str, name: str, rest: str) -> JSONResponse:
    rev, _ = rev_and_path(request, 5)
    offset = int_param(request, "offset", 0)
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        head = resolve_revision(session, repo, rev)
        chain = commit_chain(session, head, limit=offset + COMMITS_PAGE + 1)
    page = chain[offset : offset + COMMITS_PAGE]
    more = len(chain) > offset + COMMITS_PAGE
    return JSONResponse(
        [commit_json(c) for c in page], headers=next_page(request, offset + COMMITS_PAGE) if more else None
    )


@router.post("/api/{plural}/{owner}/{name}/branch/{rest:path}")
async def create_branch(request: Request, plural: str, owner: str, name: str, rest: str) -> Response:
    principal = require_principal(request)
    rev, rest = rev_and_path(request, 5)  # the name quoted as one segment, or with its '/' left as they are
    branch = f"{rev}/{rest.rstrip('/')}" if rest.rstrip("/") else rev
    start = _json_body(await read_json(request, optional=True)).get("startingPoint")
    if start is not None and not isinstance(start, str):
        raise BadRequestError("startingPoint must be a revision (string)")
    repo, commit_id = await run_in_threadpool(
        repos.create_ref,
        hub_of(request).db,
        principal,
        repo_type_of(plural),
        repo_id_of(owner, name),
        "branch",
        branch,
        start,
    )
    _notify_ref(request, repo, RefUpdate(f"refs/heads/{branch}", None, commit_id))
    return Response(status_code=200)


@router.delete("/api/{plural}/{owner}/{name}/branch/{rest:path}")
def delete_branch(request: Request, plural: str, owner: str, name: str, rest: str) -> Response:
    principal = require_principal(request)
    branch = "/".join(rev_and_path(request, 5)).strip("/")
    repo, commit_id = repos.delete_ref(
        hub_of(request).db, principal, repo_type_of(plural), repo_id_of(owner, name), "branch", branch
    )
    _notify_ref(request, repo, RefUpdate(f"refs/heads/{branch}", commit_id, None))
    return Response(status_code=200)


@router.post("/api/{plural}/{owner}/{name}/tag/{rest:path}")
async def create_tag(request: Request, plural: str, owner: str, name: str, rest: str) -> Response:
    principal = require_principal(request)
    revision, _ = rev_and_path(request, 5)
    body = _json_body(await read_json(request))
    tag, message = body.get("tag"), body.get("message")
    if not isinstance(tag, str):
        raise BadRequestError("missing tag name")
    if message is not None and not isinstance(message, str):
        raise BadRequestError("the tag message must be a string")
    repo, commit_id = await run_in_threadpool(
        repos.create_ref,
        hub_of(request).db,
        principal,
        repo_type_of(plural),
        repo_id_of(owner, name),
        "tag",
        tag,
        revision,
        message,
    )
    _notify_ref(request, repo, RefUpdate(f"refs/tags/{tag}", None, commit_id))
    return Response(status_code=200)


@router.delete("/api/{plural}/{owner}/{name}/tag/{rest:path}")
def delete_tag(request: Request, plural: str, owner: str, name: str, rest: str) -> Response:
    principal = require_principal(request)
    tag = "/".join(rev_and_path(request, 5)).strip("/")
    repo, commit_id = repos.delete_ref(
        hub_of(request).db, principal, repo_type_of(plural), repo_id_of(owner, name), "tag", tag
    )
    _notify_ref(request, repo, RefUpdate(f"refs/tags/{tag}", commit_id, None))
    return Response(status_code=200)


def _notify_ref(request: Request, repo: Repo, update: RefUpdate) -> None:
    notify(request, repo_event(repo, "update", "repo.content", updated_refs=(update,)))
