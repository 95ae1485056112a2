"""Repos: create, delete, move, duplicate, settings, list and search, info, refs, commit history, branches and tags."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, ConflictError
from openckpt.hub.bodies import Invalid, JsonObject
from openckpt.hub.context import Hub, int_param, next_page, repo_id_of, rev_and_path
from openckpt.hub.db.engine import Database
from openckpt.hub.deps import DbDep, EventsDep, HubDep, PrincipalDep, RepoDep, RepoRef, RepoTypeDep, UserDep, json_body
from openckpt.hub.error_response import header_text
from openckpt.hub.routes import buckets
from openckpt.hub.routes.webhooks import change_events, named_event
from openckpt.hub.services import gate, provenance, repo_duplicate, repo_move, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import commit_chain, resolve_revision
from openckpt.hub.services.trees import read_tree
from openckpt.hub.services.webhooks.delivery import Event, repo_event
from openckpt.hub.views import commit_json, repo_json, repo_security_json
from openckpt.protocol import ERROR_CODE, ERROR_MESSAGE, REPO_TYPE_PREFIX

router = APIRouter()
PAGE = 1000
COMMITS_PAGE = 50


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class CreateBody(JsonObject):
    """``HfApi.create_repo``'s body; ``visibility``, when sent, wins over ``private`` (which older clients send)."""

    expected = "missing repo name: expected JSON {name, organization?, type?, private?}"
    name: str
    organization: Annotated[str | None, Invalid("organization must be an account name")] = None
    type: str | None = None
    private: Any = None
    visibility: Any = None


class DeleteBody(JsonObject):
    expected = "expected JSON {name, organization?, type?}"
    name: str
    organization: Any = None
    type: Any = None


class MoveBody(JsonObject):
    expected = "expected JSON {fromRepo, toRepo, type?}"
    from_repo: str = Field(alias="fromRepo")
    to_repo: str = Field(alias="toRepo")
    type: str | None = None


class DuplicateBody(JsonObject):
    expected = "expected JSON {repository, visibility?}"
    repository: Annotated[
        str | None, Invalid("repository must be a repo id: expected JSON {repository, visibility?}")
    ] = None
    visibility: Annotated[Literal["public", "private"] | None, Invalid("visibility must be 'public' or 'private'")] = (
        None
    )
    private: Annotated[bool | None, Invalid("private must be true or false")] = None


class SettingsBody(JsonObject):
    """``HfApi.update_repo_settings``' body: the service checks the values."""

    private: Any = None
    visibility: Any = None
    gated: Any = None
    default_branch: Annotated[str | None, Invalid("defaultBranch must be a branch name")] = Field(
        None, alias="defaultBranch"
    )  # openckpt's own: the Hub has no such setting


class BranchBody(JsonObject):
    starting_point: Annotated[str | None, Invalid("startingPoint must be a revision (string)")] = Field(
        None, alias="startingPoint"
    )


class TagBody(JsonObject):
    expected = "missing tag name"
    tag: str
    message: Annotated[str | None, Invalid("the tag message must be a string")] = None


@router.post("/api/repos/create")
async def create(
    request: Request, hub: HubDep, principal: UserDep, body: Annotated[CreateBody, Depends(json_body(CreateBody))]
) -> JSONResponse:
    repo_type, name, organization = body.type or "model", body.name, body.organization
    private = body.visibility == "private" if "visibility" in body.model_fields_set else bool(body.private)
    repo_id = f"{organization or principal.name}/{name}"
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX.get(repo_type, '')}{repo_id}"
    try:
        with change_events(request, named_event(repo_type, repo_id, "create")):  # written in the creation's transaction
            repo = await run_in_threadpool(
                repos.create_repo,
                hub.db,
                hub.store,
                principal=principal,
                repo_type=repo_type,
                name=name,
                owner=organization,
                private=private,
            )
    except ConflictError as e:  # the client reads the url of the existing repo from the 409 (exist_ok=True)
        headers = {ERROR_CODE: e.code, ERROR_MESSAGE: header_text(str(e))}
        return JSONResponse({"error": str(e), "url": url}, 409, headers=headers)
    return JSONResponse({"url": url, "name": repo_id, "id": str(repo.id)})


@router.delete("/api/repos/delete")
async def delete(
    request: Request, db: DbDep, principal: UserDep, body: Annotated[DeleteBody, Depends(json_body(DeleteBody))]
) -> Response:
    owner = body.organization or principal.name
    if not isinstance(owner, str):
        raise BadRequestError(DeleteBody.expected)
    repo_id, repo_type = repo_id_of(owner, body.name), body.type or "model"
    event = await run_in_threadpool(_deleted, db, principal, repo_type, repo_id)
    with change_events(request, lambda _: event):  # written in the deletion's transaction
        await run_in_threadpool(repos.delete_repo, db, principal, repo_type=repo_type, repo_id=repo_id)
    return Response(status_code=200)


def _deleted(db: Database, principal: Principal, repo_type: str, repo_id: str) -> Event:
    """The event of deleting the repo, as it is before (its row will be gone)."""
    with db.read() as session:
        return repo_event(
            repos.find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=True),
            "delete",
            scope="repo",
        )


@router.post("/api/repos/move")
async def move(
    request: Request, db: DbDep, principal: UserDep, body: Annotated[MoveBody, Depends(json_body(MoveBody))]
) -> JSONResponse:
    """Rename or transfer a repo (``HfApi.move_repo``); its old name redirects reads to the new one."""
    from_repo, to_repo, repo_type = body.from_repo, body.to_repo, body.type or "model"
    if repo_type == "bucket":  # HfApi.move_bucket
        base = str(request.base_url).rstrip("/")
        return await run_in_threadpool(
            partial(buckets.move, db, principal, base=base, from_id=from_repo, to_id=to_repo)
        )
    with change_events(
        request, named_event(repo_type, repo_move.parse_destination(repo_type, to_repo), "move", moved_from=from_repo)
    ):
        repo = await run_in_threadpool(
            repo_move.move_repo, db, principal, repo_type=repo_type, from_id=from_repo, to_id=to_repo
        )
    repo_id = repo.repo_id
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX.get(repo_type, '')}{repo_id}"
    return JSONResponse({"url": url, "name": repo_id})


@router.post("/api/{plural}/{owner}/{name}/duplicate")
async def duplicate(
    request: Request,
    hub: HubDep,
    principal: UserDep,
    body: Annotated[DuplicateBody, Depends(json_body(DuplicateBody, optional=True))],
    repo: RepoDep,
) -> JSONResponse:
    """Copy a repo with its whole history (``HfApi.duplicate_repo``). No bytes are copied, so no files are pending;
    Space hardware, secrets and variables are ignored (this hub runs no Spaces)."""
    private = body.private if body.visibility is None else body.visibility == "private"
    repo_type, from_id = repo.type, repo.id
    to_id = repo_duplicate.destination(principal, from_id, repository=body.repository)
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX.get(repo_type, '')}{to_id}"
    try:
        with change_events(request, named_event(repo_type, to_id, "create")):  # written in the copy's transaction
            await run_in_threadpool(
                repo_duplicate.duplicate_repo,
                hub.db,
                hub.store,
                settings=hub.settings,
                principal=principal,
                repo_type=repo_type,
                from_id=from_id,
                to_id=to_id,
                private=private,
            )
    except ConflictError as e:  # the client reads the url of the existing repo from the 409 (exist_ok=True)
        headers = {ERROR_CODE: e.code, ERROR_MESSAGE: header_text(str(e))}
        return JSONResponse({"error": str(e), "url": url}, 409, headers=headers)
    return JSONResponse({"url": url, "name": to_id, "filesCopyPending": False})


@router.put("/api/{plural}/{owner}/{name}/settings")
async def settings(
    request: Request,
    hub: HubDep,
    principal: UserDep,
    body: Annotated[SettingsBody, Depends(json_body(SettingsBody))],
    repo: RepoDep,
) -> Response:
    private = body.visibility == "private" if "visibility" in body.model_fields_set else body.private
    asked = {"private": private, "gated": body.gated, "defaultBranch": body.default_branch}
    changed = {k: v for k, v in asked.items() if v is not None}

    def event(session: Session) -> Event:  # at the end of the change's transaction, which it commits with
        found = repos.find_repo(session, principal, repo_type=repo.type, repo_id=repo.id)
        return repo_event(found, "update", scope="repo.config", updated_config=changed)

    with change_events(request, event):
        await run_in_threadpool(
            repos.update_settings,
            hub.db,
            principal,
            repo_type=repo.type,
            repo_id=repo.id,
            private=private,
            gated=body.gated,
            default_branch=body.default_branch,
            store=hub.store,
        )
    return Response(status_code=200)


@router.get("/api/{plural}")
def list_repos(request: Request, repo_type: RepoTypeDep, principal: PrincipalDep, hub: HubDep) -> JSONResponse:
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
    with hub.db.read() as session:
        found = repos.list_repos(session, principal, repo_type=repo_type, query=query)
        items = []
        for repo in found[:page]:
            if full:
                head = resolve_revision(session, repo, rev=repo.default_branch)
                entries = list(read_tree(session, head.tree_id).values())
                items.append(repo_json(repo, head=head, entries=entries, card=card))
            else:
                items.append(repo_json(repo, card=card))
    return JSONResponse(items, headers=next_page(request, offset + page) if len(found) > page else None)


@router.get("/api/{plural}/{owner}/{name}")
def info(request: Request, hub: HubDep, principal: PrincipalDep, repo: RepoDep) -> dict[str, Any]:
    return _info(request, hub, principal, repo, None)  # the default branch: huggingface_hub sends no revision here


@router.get("/api/{plural}/{owner}/{name}/revision/{rest:path}")
def info_at_revision(request: Request, hub: HubDep, principal: PrincipalDep, repo: RepoDep) -> dict[str, Any]:
    rev, _ = rev_and_path(request, 5)
    return _info(request, hub, principal, repo, rev)


def _info(
    request: Request, hub: Hub, principal: Principal | None, repo_ref: RepoRef, rev: str | None
) -> dict[str, Any]:
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id)
        head = resolve_revision(session, repo, rev=rev or repo.default_branch)
        entries = list(read_tree(session, head.tree_id).values())
        data = repo_json(repo, head=head, entries=entries, blobs=_flag(request.query_params.get("blobs")))
        if _flag(request.query_params.get("securityStatus")):  # trust: scan results per file
            found = gate.statuses(session, hub.settings, repo_id=repo.id, entries=entries)
            rules = gate.rules_of(session, hub.settings, repo=repo).to_dict()
            data["securityRepoStatus"] = repo_security_json(found, rules)
        if repo.type == "model" and "lineageVerification" in request.query_params.getlist("expand"):
            data["lineageVerification"] = provenance.compact(provenance.cached(hub.settings, head.id))
        return data


@router.get("/api/{plural}/{owner}/{name}/auth-check")
def auth_check(db: DbDep, principal: PrincipalDep, repo: RepoDep) -> dict[str, Any]:
    """200 if the caller may read the repo; the usual 404 / 403 otherwise."""
    with db.read() as session:
        repos.find_repo(session, principal, repo_type=repo.type, repo_id=repo.id)
    return {"ok": True}


@router.get("/api/{plural}/{owner}/{name}/auth-check/write")
def auth_check_write(db: DbDep, principal: UserDep, repo: RepoDep) -> dict[str, Any]:
    """200 if the caller may write to the repo; a 401 without a token, the usual 404 / 403 otherwise."""
    with db.read() as session:
        repos.find_repo(session, principal, repo_type=repo.type, repo_id=repo.id, write=True)
    return {"ok": True}


@router.get("/api/{plural}/{owner}/{name}/refs")
def refs(request: Request, db: DbDep, principal: PrincipalDep, repo_ref: RepoDep) -> dict[str, Any]:
    rows = repos.list_refs(db, principal, repo_type=repo_ref.type, repo_id=repo_ref.id)
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
def commits(request: Request, db: DbDep, principal: PrincipalDep, repo_ref: RepoDep) -> JSONResponse:
    rev, _ = rev_and_path(request, 5)
    offset = int_param(request, "offset", 0)
    with db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id)
        head = resolve_revision(session, repo, rev=rev)
        chain = commit_chain(session, head, limit=offset + COMMITS_PAGE + 1)
    page = chain[offset : offset + COMMITS_PAGE]
    more = len(chain) > offset + COMMITS_PAGE
    return JSONResponse(
        [commit_json(c) for c in page], headers=next_page(request, offset + COMMITS_PAGE) if more else None
    )


@router.post("/api/{plural}/{owner}/{name}/branch/{rest:path}")
async def create_branch(
    request: Request,
    db: DbDep,
    principal: UserDep,
    body: Annotated[BranchBody, Depends(json_body(BranchBody, optional=True))],
    repo_ref: RepoDep,
    events: EventsDep,
) -> Response:
    rev, rest = rev_and_path(request, 5)  # the name quoted as one segment, or with its '/' left as they are
    branch = f"{rev}/{rest.rstrip('/')}" if rest.rstrip("/") else rev
    await run_in_threadpool(
        repos.create_ref,
        db,
        principal,
        repo_type=repo_ref.type,
        repo_id=repo_ref.id,
        kind="branch",
        name=branch,
        start=body.starting_point,
        events=events,
    )
    return Response(status_code=200)


@router.delete("/api/{plural}/{owner}/{name}/branch/{rest:path}")
def delete_branch(request: Request, db: DbDep, principal: UserDep, repo_ref: RepoDep, events: EventsDep) -> Response:
    branch = "/".join(rev_and_path(request, 5)).strip("/")
    repos.delete_ref(
        db, principal, repo_type=repo_ref.type, repo_id=repo_ref.id, kind="branch", name=branch, events=events
    )
    return Response(status_code=200)


@router.post("/api/{plural}/{owner}/{name}/tag/{rest:path}")
async def create_tag(
    request: Request,
    db: DbDep,
    principal: UserDep,
    body: Annotated[TagBody, Depends(json_body(TagBody))],
    repo_ref: RepoDep,
    events: EventsDep,
) -> Response:
    revision, _ = rev_and_path(request, 5)
    await run_in_threadpool(
        repos.create_ref,
        db,
        principal,
        repo_type=repo_ref.type,
        repo_id=repo_ref.id,
        kind="tag",
        name=body.tag,
        start=revision,
        message=body.message,
        events=events,
    )
    return Response(status_code=200)


@router.delete("/api/{plural}/{owner}/{name}/tag/{rest:path}")
def delete_tag(request: Request, db: DbDep, principal: UserDep, repo_ref: RepoDep, events: EventsDep) -> Response:
    tag = "/".join(rev_and_path(request, 5)).strip("/")
    repos.delete_ref(db, principal, repo_type=repo_ref.type, repo_id=repo_ref.id, kind="tag", name=tag, events=events)
    return Response(status_code=200)
