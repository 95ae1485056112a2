"""Files of a revision: tree listing, paths-info, preupload, and NDJSON commits."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from openckpt.digest import git_blob_sha1, lfs_pointer
from openckpt.errors import BadRequestError, EntryNotFoundError, PayloadTooLargeError
from openckpt.hub.context import hub_of, optional_principal, repo_id_of, repo_type_of, require_principal, rev_and_path
from openckpt.hub.db.models import TreeEntry
from openckpt.hub.services import repos
from openckpt.hub.services.commits import FileChange, create_commit, resolve_revision, tree_entries
from openckpt.hub.services.names import check_path
from openckpt.hub.views import directory_json, file_json
from openckpt.protocol import REPO_TYPE_PREFIX

router = APIRouter()
PAGE = 1000
LFS_SUFFIXES = tuple(line.split()[0][1:] for line in repos.GITATTRIBUTES.decode().splitlines())


def _listing(entries: dict[str, TreeEntry], path: str, recursive: bool) -> list[dict[str, Any]]:
    """Files and directories under ``path`` (direct children unless ``recursive``)."""
    prefix = f"{path}/" if path else ""
    if path and path in entries:
        raise EntryNotFoundError(f"{path} is a file, not a folder")
    below = [e for p, e in entries.items() if p.startswith(prefix)]
    if path and not below:
        raise EntryNotFoundError(f"No such folder: {path}")
    dirs: dict[str, list[TreeEntry]] = {}
    files: list[TreeEntry] = []
    for e in below:
        rel = e.path[len(prefix) :].split("/")
        if len(rel) == 1:
            files.append(e)
        else:
            for depth in range(1, len(rel) if recursive else 2):
                dirs.setdefault(prefix + "/".join(rel[:depth]), []).append(e)
            if recursive:
                files.append(e)
    items = [directory_json(d, es) for d, es in dirs.items()] + [file_json(e) for e in files]
    return sorted(items, key=lambda i: i["path"])


@router.get("/api/{plural}/{owner}/{name}/tree/{rest:path}")
def tree(request: Request, plural: str, owner: str, name: str, rest: str) -> JSONResponse:
    rev, path = rev_and_path(request, 5)
    recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
    offset = int(request.query_params.get("offset", 0))
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(session, optional_principal(request), repo_type_of(plural), repo_id_of(owner, name))
        commit = resolve_revision(session, repo, rev)
        items = _listing(tree_entries(session, commit.tree_id), path.strip("/"), recursive)
    headers = None
    if len(items) > offset + PAGE:
        url = request.url.include_query_params(offset=offset + PAGE)
        headers = {"Link": f'<{url}>; rel="next"'}
    return JSONResponse(items[offset : offset + PAGE], headers=headers)


@router.post("/api/{plural}/{owner}/{name}/paths-info/{rest:path}")
async def paths_info(request: Request, plural: str, owner: str, name: str, rest: str) -> list[dict[str, Any]]:
    rev, _ = rev_and_path(request, 5)
    form = await request.form()
    paths = [str(p).strip("/") for p in form.getlist("paths")]
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(session, optional_principal(request), repo_type_of(plural), repo_id_of(owner, name))
        entries = tree_entries(session, resolve_revision(session, repo, rev).tree_id)
    out: list[dict[str, Any]] = []
    for path in paths:
        if path in entries:
            out.append(file_json(entries[path]))
        elif below := [e for p, e in entries.items() if p.startswith(path + "/")]:
            out.append(directory_json(path, below))
    return out


def _upload_mode(path: str, size: int, sample: bytes, max_inline: int) -> str:
    if size == 0:
        return "regular"
    if size > max_inline or path.endswith(LFS_SUFFIXES) or b"\0" in sample:
        return "lfs"
    return "regular"


@router.post("/api/{plural}/{owner}/{name}/preupload/{rest:path}")
async def preupload(request: Request, plural: str, owner: str, name: str, rest: str) -> dict[str, Any]:
    rev, _ = rev_and_path(request, 5)
    body = await request.json()
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or len(files) > 1000:
        raise BadRequestError("expected JSON {files: [{path, sample, size}]} with at most 1000 files")
    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(session, require_principal(request), repo_type_of(plural), repo_id_of(owner, name),
                               write=True)  # fmt: skip
        entries = tree_entries(session, resolve_revision(session, repo, rev).tree_id)
    out = []
    for f in files:
        path = check_path(str(f.get("path", "")))
        try:
            sample = base64.b64decode(f.get("sample") or "")
        except (binascii.Error, ValueError):
            sample = b""
        mode = _upload_mode(path, int(f.get("size", 0)), sample, hub.settings.max_inline_bytes)
        item: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": False}
        if (existing := entries.get(path)) is not None:
            item["oid"] = existing.sha256 if existing.lfs else existing.git_oid
        out.append(item)
    return {"files": out, "commitOid": None}


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > limit:
        raise PayloadTooLargeError(f"commit body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"commit body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_ndjson(raw: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] | None = None
    ops: list[dict[str, Any]] = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError) as e:
            raise BadRequestError(f"commit line {number} is not a valid {{key, value}} JSON object") from e
        if key == "header":
            header = value
        elif key in ("file", "lfsFile", "deletedFile", "deletedFolder"):
            ops.append({"key": key, **value})
        else:
            raise BadRequestError(f"commit line {number}: unknown key {key!r}")
    if header is None or not isinstance(header.get("summary", ""), str):
        raise BadRequestError("commit has no header line with a summary")
    return header, ops


@router.post("/api/{plural}/{owner}/{name}/commit/{rest:path}")
async def commit(request: Request, plural: str, owner: str, name: str, rest: str) -> dict[str, Any]:
    rev, _ = rev_and_path(request, 5)
    if request.query_params.get("create_pr", "").lower() in ("1", "true"):
        raise BadRequestError("pull requests are not supported by this hub: commit to a branch instead")
    principal = require_principal(request)
    hub = hub_of(request)
    repo_type, repo_id = repo_type_of(plural), repo_id_of(owner, name)
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type, repo_id, write=True)
        resolve_revision(session, repo, rev)
    header, ops = _parse_ndjson(await _read_bounded(request, hub.settings.max_commit_bytes))
    changes: list[FileChange] = []
    for op in ops:
        path = check_path(
            str(op.get("path", "")).strip("/") if op["key"] == "deletedFolder" else str(op.get("path", ""))
        )
        if op["key"] == "file":
            try:
                data = base64.b64decode(op.get("content", ""), validate=True)
            except (binascii.Error, ValueError) as e:
                raise BadRequestError(f"content of {path} is not valid base64") from e
            if len(data) > hub.settings.max_inline_bytes:
                raise BadRequestError(f"{path} is {len(data)} bytes: files over {hub.settings.max_inline_bytes} bytes "
                                      "must be uploaded with LFS")  # fmt: skip
            with hub.db.write() as session:
                sha256, oid = repos.store_bytes(hub.store, session, data)
            changes.append(FileChange(path, "add", sha256, len(data), oid, lfs=False))
        elif op["key"] == "lfsFile":
            oid, size = str(op.get("oid", "")), op.get("size")
            if op.get("algo", "sha256") != "sha256" or len(oid) != 64 or not isinstance(size, int):
                raise BadRequestError(f"lfsFile {path} needs a sha256 oid and a size")
            changes.append(FileChange(path, "add", oid, size, git_blob_sha1(lfs_pointer(oid, size)), lfs=True))
        elif op["key"] == "deletedFile":
            changes.append(FileChange(path, "delete"))
        else:
            changes.append(FileChange(path, "delete_folder"))
    parent = header.get("parentCommit")
    commit_id, _ = create_commit(
        hub.db, repo.id, rev, changes, title=header.get("summary") or "Update", message=header.get("description") or "",
        author=principal.name, parent_commit=parent if isinstance(parent, str) and parent else None,
    )  # fmt: skip
    if rev == repos.DEFAULT_BRANCH:
        repos.refresh_metadata(hub.db, hub.store, repo.id)
    base = str(request.base_url).rstrip("/")
    return {"commitOid": commit_id, "commitUrl": f"{base}/{REPO_TYPE_PREFIX[repo_type]}{repo_id}/commit/{commit_id}",
            "pullRequestUrl": None}  # fmt: skip
