"""Files of a revision: tree listing, paths-info, preupload, NDJSON commits, and squashing a branch's history."""

from __future__ import annotations

import base64
import binascii
import re
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, EntryNotFoundError
from openckpt.hub.bodies import ndjson_lines, read_bounded, read_json
from openckpt.hub.context import (
    hub_of,
    int_param,
    next_page,
    optional_principal,
    repo_id_of,
    repo_type_of,
    rev_and_path,
)
from openckpt.hub.db.models import Commit
from openckpt.hub.deps import EventsDep, HubDep, RepoDep, UserDep
from openckpt.hub.routes import security
from openckpt.hub.routes.webhooks import pr_recorded
from openckpt.hub.services import commit_flow, preflight, pull_requests, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commit_flow import NewFile
from openckpt.hub.services.commits import FileChange, resolve_revision
from openckpt.hub.services.history import last_commits
from openckpt.hub.services.names import check_new_path, check_path
from openckpt.hub.services.trees import FileEntry, Folder, lookup, read_folder
from openckpt.hub.services.xet import meta as xet_meta
from openckpt.hub.settings import Settings
from openckpt.hub.views import directory_json, file_json, last_commit_json
from openckpt.protocol import REPO_TYPE_PREFIX
from openckpt.store.blobs import is_sha256

router = APIRouter()
PAGE = 1000
EXPANDED_PAGE = 50


def _listing(
    session: Session, root: str, path: str, recursive: bool
) -> tuple[list[FileEntry | Folder], dict[str, FileEntry]]:
    """Files and folders under ``path`` (direct children unless ``recursive``) by path, and the files by path."""
    if path:
        found = lookup(session, root, path=path)
        if isinstance(found, FileEntry):
            raise EntryNotFoundError(f"{path} is a file, not a folder")
        if found is None:
            raise EntryNotFoundError(f"No such folder: {path}")
    files, folders = read_folder(session, root, path=path, recursive=recursive)
    return sorted([*folders.values(), *files.values()], key=lambda e: e.path), files


@router.get("/api/{plural}/{owner}/{name}/tree/{rest:path}")
def tree(request: Request, plural: str, owner: str, name: str, rest: str) -> JSONResponse:
    rev, path = rev_and_path(request, 5)
    path = path.rstrip("/")
    if path:
        check_path(path)
    recursive, expand = _flag(request, "recursive"), _flag(request, "expand")
    offset = int_param(request, "offset", 0)
    page = EXPANDED_PAGE if expand else PAGE  # as on the Hub: finding last commits costs
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(
            session,
            optional_principal(request, db=session),
            repo_type=repo_type_of(plural),
            repo_id=repo_id_of(owner, name),
        )
        commit = resolve_revision(session, repo, rev=rev)
        found, entries = _listing(session, commit.tree_id, path, recursive)
        shown = [file_json(e) if isinstance(e, FileEntry) else directory_json(e) for e in found[offset : offset + page]]
        xet_meta.add_xet_hashes(session, hub.settings, repo.id, entries, shown)
        if expand:
            _add_last_commits(session, commit, shown)
            security.add_file_security(session, hub.settings, repo.id, entries, shown)
    more = len(found) > offset + page
    return JSONResponse(shown, headers=next_page(request, offset + page) if more else None)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true")


def _add_last_commits(session: Session, head: Commit, items: list[dict[str, Any]]) -> None:
    found = last_commits(session, head, paths=[i["path"] for i in items])
    for item in items:
        if (commit := found.get(item["path"])) is not None:
            item["lastCommit"] = last_commit_json(commit)


@router.post("/api/{plural}/{owner}/{name}/paths-info/{rest:path}")
async def paths_info(request: Request, plural: str, owner: str, name: str, rest: str) -> list[dict[str, Any]]:
    rev, _ = rev_and_path(request, 5)
    form = await request.form()
    paths = [check_path(str(p).rstrip("/")) for p in form.getlist("paths")]
    expand = str(form.get("expand", "")).lower() in ("1", "true")
    return await run_in_threadpool(_paths_info, request, plural, owner, name, rev, paths, expand)


def _paths_info(
    request: Request, plural: str, owner: str, name: str, rev: str, paths: list[str], expand: bool
) -> list[dict[str, Any]]:
    """Entries of the paths that exist, files or folders, in the order asked."""
    with hub_of(request).db.read() as session:
        repo = repos.find_repo(
            session,
            optional_principal(request, db=session),
            repo_type=repo_type_of(plural),
            repo_id=repo_id_of(owner, name),
        )
        head = resolve_revision(session, repo, rev=rev)
        out: list[dict[str, Any]] = []
        entries: dict[str, FileEntry] = {}
        steps: dict[tuple[str, str], Any] = {}
        for path in dict.fromkeys(paths):  # each read on its own: only the folders on its way
            found = lookup(session, head.tree_id, path=path, cache=steps) if path else None
            if isinstance(found, FileEntry):
                entries[path] = found
                out.append(file_json(found))
            elif isinstance(found, Folder):
                out.append(directory_json(found))
        xet_meta.add_xet_hashes(session, hub_of(request).settings, repo.id, entries, out)
        if expand:
            _add_last_commits(session, head, out)
            security.add_file_security(session, hub_of(request).settings, repo.id, entries, out)
    return out


@router.post("/api/{plural}/{owner}/{name}/preupload/{rest:path}")
async def preupload(request: Request, hub: HubDep, user: UserDep, repo: RepoDep) -> dict[str, Any]:
    rev, _ = rev_and_path(request, 5)
    body = await read_json(request)
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or len(files) > 1000:
        raise BadRequestError("expected JSON {files: [{path, sample, size}]} with at most 1000 files")
    proposing = request.query_params.get("create_pr", "") in ("1", "true") or pull_requests.pr_num(rev) is not None
    wanted = [check_new_path(f["path"]) for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]
    find = partial(
        preflight.existing_files, repo_type=repo.type, repo_id=repo.id, revision=rev, paths=wanted, proposing=proposing
    )
    entries = await run_in_threadpool(find, hub.db, user)
    out = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not _is_size(f.get("size", 0)):
            raise BadRequestError("each file of a preupload is {path: string, size: integer, sample: base64}")
        path = check_new_path(f["path"])
        try:
            sample = base64.b64decode(f.get("sample") or "")
        except (binascii.Error, ValueError, TypeError):
            sample = b""
        lfs = commit_flow.is_lfs(path, f.get("size", 0), sample=sample, max_inline=hub.settings.max_inline_bytes)
        item: dict[str, Any] = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
        if (existing := entries.get(path)) is not None:
            item["oid"] = existing.sha256 if existing.lfs else existing.git_oid
        out.append(item)
    return {"files": out, "commitOid": None}


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")


def _parse_ndjson(raw: bytes, settings: Settings) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] | None = None
    ops: list[dict[str, Any]] = []
    line_limit = 4 * -(-settings.max_inline_bytes // 3) + 2**20  # an inline file, base64, and its path
    for number, item in ndjson_lines(raw, line_limit=line_limit, max_lines=settings.max_commit_operations + 1):
        try:
            key, value = item["key"], item["value"]
        except (KeyError, TypeError) as e:
            raise BadRequestError(f"commit line {number} is not a valid {{key, value}} JSON object") from e
        if not isinstance(value, dict):
            raise BadRequestError(f"commit line {number}: the value of {key!r} must be a JSON object")
        if key == "header":
            header = value
        elif key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
            if not isinstance(value.get("path"), str):
                raise BadRequestError(f"commit line {number}: {key} needs a path")
            ops.append({**value, "key": key})
        else:
            raise BadRequestError(f"commit line {number}: unknown key {key!r}")
    if header is None or not all(isinstance(header.get(k, ""), str) for k in ("summary", "description")):
        raise BadRequestError("commit has no header line with a summary")
    parent = header["parentCommit"] = header.get("parentCommit") or None
    if parent is not None and not (isinstance(parent, str) and _COMMIT_ID.match(parent)):
        raise BadRequestError(f"parentCommit must be a full commit id (40 hex digits), got {parent!r}")
    return header, ops


def _change(op: dict[str, Any], max_inline: int) -> FileChange | NewFile:
    """One operation, validated: a change, or an inline file still to be stored (never as LFS)."""
    key = op["key"]
    check = check_new_path if key in ("file", "lfsFile") else check_path  # an old file may still be deleted
    path = check(op["path"].strip("/") if key == "deletedFolder" else op["path"])
    if key == "file":
        try:
            data = base64.b64decode(op.get("content", ""), validate=True)
        except (binascii.Error, ValueError, TypeError) as e:
            raise BadRequestError(f"content of {path} is not valid base64") from e
        if len(data) > max_inline:
            raise BadRequestError(f"{path} is {len(data)} bytes: larger than {max_inline} bytes must go through LFS")
        return NewFile(path, data, lfs=False)
    if key == "lfsFile":
        oid, size = op.get("oid"), op.get("size")
        if op.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not is_sha256(oid):
            raise BadRequestError(f"lfsFile {path} needs the sha256 of its content as oid")
        if size is not None and not _is_size(size):
            raise BadRequestError(f"lfsFile {path}: size must be a non-negative integer")
        # a copy names an object already stored and omits its size (-1 until looked up)
        return FileChange(path, "add", oid, -1 if size is None else size, lfs=True)
    return FileChange(path, "delete" if key == "deletedFile" else "delete_folder")


def _commit_request(
    raw: bytes, settings: Settings, *, principal: Principal, repo_id: int, revision: str, create_pr: bool
) -> commit_flow.CommitRequest:
    """The NDJSON commit ``raw`` as a request of the commit flow, every operation checked."""
    header, ops = _parse_ndjson(raw, settings)
    return commit_flow.CommitRequest(
        principal=principal,
        repo_id=repo_id,
        revision=revision,
        changes=[_change(op, settings.max_inline_bytes) for op in ops],
        title=header.get("summary") or "Update",
        message=header.get("description") or "",
        parent_commit=header.get("parentCommit"),
        create_pr=create_pr,
    )


@router.post("/api/{plural}/{owner}/{name}/commit/{rest:path}")
async def commit(request: Request, hub: HubDep, user: UserDep, repo: RepoDep, events: EventsDep) -> dict[str, Any]:
    """``HfApi.create_commit``: a commit on a branch or a pull request's ``refs/pr/N``, or (``create_pr``) a pull
    request onto the branch holding it."""
    rev, _ = rev_and_path(request, 5)
    create_pr = request.query_params.get("create_pr", "").lower() in ("1", "true")
    find = partial(pull_requests.find_committable, revision=rev, create_pr=create_pr)
    target = await run_in_threadpool(find, hub.db, user, repo.type, repo.id)  # before reading the body
    raw = await read_bounded(request, hub.settings.max_commit_bytes)
    parse = partial(_commit_request, principal=user, repo_id=target.id, revision=rev, create_pr=create_pr)
    wanted = await run_in_threadpool(parse, raw, hub.settings)
    recorded = pr_recorded(request, opened=create_pr)  # the pull request's discussion event
    flow = partial(commit_flow.commit, settings=hub.settings, request=wanted, events=events, on_pr_commit=recorded)
    done = await run_in_threadpool(flow, hub.db, hub.store)
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX[repo.type]}{repo.id}"
    return {
        "commitOid": done.commit_id,
        "commitUrl": f"{url}/commit/{done.commit_id}",
        "pullRequestUrl": f"{url}/discussions/{done.pull_request}" if create_pr else None,
    }


@router.post("/api/{plural}/{owner}/{name}/super-squash/{rest:path}")
async def super_squash(
    request: Request, hub: HubDep, user: UserDep, repo: RepoDep, events: EventsDep
) -> dict[str, Any]:
    """Replace the history of a branch by one commit of its current files (``HfApi.super_squash_history``)."""
    branch = "/".join(rev_and_path(request, 5)).strip("/")  # quoted as one segment by clients, or not
    body = await read_json(request, optional=True)
    if not isinstance(body, dict) or not isinstance(body.get("message", ""), str):
        raise BadRequestError("expected a JSON body {message: string}")
    title = body.get("message", "").strip() or f"Super-squash branch '{branch}'"
    find = partial(pull_requests.find_committable, revision=branch)
    target = await run_in_threadpool(find, hub.db, user, repo.type, repo.id)
    squash = partial(
        commit_flow.squash, settings=hub.settings, principal=user, repo_id=target.id, branch=branch, title=title
    )
    commit_id = (await run_in_threadpool(partial(squash, events=events), hub.db, hub.store)).commit_id
    base = str(request.base_url).rstrip("/")
    return {"commitOid": commit_id, "commitUrl": f"{base}/{REPO_TYPE_PREFIX[repo.type]}{repo.id}/commit/{commit_id}"}
