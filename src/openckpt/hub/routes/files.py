"""Files of a revision: tree listing, paths-info, preupload, NDJSON commits, and squashing a branch's history."""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.digest import git_blob_sha1, lfs_pointer
from openckpt.errors import BadRequestError, EntryNotFoundError
from openckpt.hub.bodies import ndjson_lines, read_bounded, read_json
from openckpt.hub.context import (
    Hub,
    hub_of,
    int_param,
    next_page,
    optional_principal,
    repo_id_of,
    repo_type_of,
    require_principal,
    rev_and_path,
)
from openckpt.hub.db.models import Commit, Repo
from openckpt.hub.routes import security
from openckpt.hub.routes.webhooks import commit_events, notify, pr_recorded, wake
from openckpt.hub.services import (
    discussions,
    gate,
    governance,
    possession,
    provenance,
    pull_requests,
    repos,
    xet_ingest,
    xet_meta,
)
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.blob_bytes import GITATTRIBUTES
from openckpt.hub.services.commits import FileChange, create_commit, resolve_revision, squash_history
from openckpt.hub.services.history import last_commits
from openckpt.hub.services.names import check_new_path, check_path
from openckpt.hub.services.trees import FileEntry, Folder, lookup, read_folder, read_tree
from openckpt.hub.services.webhook_delivery import RefUpdate, repo_event
from openckpt.hub.settings import Settings
from openckpt.hub.views import directory_json, file_json, last_commit_json
from openckpt.protocol import REPO_TYPE_PREFIX
from openckpt.store.blobs import is_sha256

router = APIRouter()
PAGE = 1000
EXPANDED_PAGE = 50
LFS_SUFFIXES = tuple(line.split()[0][1:] for line in GITATTRIBUTES.decode().splitlines())


def _listing(
    session: Session, root: str, path: str, recursive: bool
) -> tuple[list[FileEntry | Folder], dict[str, FileEntry]]:
    """Files and folders under ``path`` (direct children unless ``recursive``) by path, and the files by path."""
    if path:
        found = lookup(session, root, path)
        if isinstance(found, FileEntry):
            raise EntryNotFoundError(f"{path} is a file, not a folder")
        if found is None:
            raise EntryNotFoundError(f"No such folder: {path}")
    files, folders = read_folder(session, root, path, recursive=recursive)
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
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        commit = resolve_revision(session, repo, rev)
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
    found = last_commits(session, head, [i["path"] for i in items])
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
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        head = resolve_revision(session, repo, rev)
        out: list[dict[str, Any]] = []
        entries: dict[str, FileEntry] = {}
        steps: dict[tuple[str, str], Any] = {}
        for path in dict.fromkeys(paths):  # each read on its own: only the folders on its way
            found = lookup(session, head.tree_id, path, cache=steps) if path else None
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


def _upload_mode(path: str, size: int, sample: bytes, max_inline: int) -> str:
    if size == 0:
        return "regular"
    if size > max_inline or path.endswith(LFS_SUFFIXES) or b"\0" in sample:
        return "lfs"
    return "regular"


@router.post("/api/{plural}/{owner}/{name}/preupload/{rest:path}")
async def preupload(request: Request, plural: str, owner: str, name: str, rest: str) -> dict[str, Any]:
    rev, _ = rev_and_path(request, 5)
    body = await read_json(request)
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list) or len(files) > 1000:
        raise BadRequestError("expected JSON {files: [{path, sample, size}]} with at most 1000 files")
    hub = hub_of(request)
    with hub.db.read() as session:
        proposing = request.query_params.get("create_pr", "") in ("1", "true") or pull_requests.pr_num(rev) is not None
        repo = pull_requests.find_uploadable(
            session, require_principal(request), repo_type_of(plural), repo_id_of(owner, name), proposing=proposing
        )
        root = resolve_revision(session, repo, rev).tree_id
        wanted = [check_new_path(f["path"]) for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]
        entries = _files_at(session, root, wanted)
    out = []
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not _is_size(f.get("size", 0)):
            raise BadRequestError("each file of a preupload is {path: string, size: integer, sample: base64}")
        path = check_new_path(f["path"])
        try:
            sample = base64.b64decode(f.get("sample") or "")
        except (binascii.Error, ValueError, TypeError):
            sample = b""
        mode = _upload_mode(path, f.get("size", 0), sample, hub.settings.max_inline_bytes)
        item: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": False}
        if (existing := entries.get(path)) is not None:
            item["oid"] = existing.sha256 if existing.lfs else existing.git_oid
        out.append(item)
    return {"files": out, "commitOid": None}


def _files_at(session: Session, root: str, paths: list[str]) -> dict[str, FileEntry]:
    """The files at ``paths`` of the tree ``root``: looked up one by one if few, else from the whole tree."""
    if len(paths) > 50:
        return read_tree(session, root)
    steps: dict[tuple[str, str], Any] = {}
    found = {p: lookup(session, root, p, cache=steps) for p in dict.fromkeys(paths)}
    return {p: e for p, e in found.items() if isinstance(e, FileEntry)}


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


def _change(op: dict[str, Any], max_inline: int) -> FileChange | tuple[str, bytes]:
    """One operation, validated: a change, or (path, bytes) of an inline file still to be stored."""
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
        return path, data
    if key == "lfsFile":
        oid, size = op.get("oid"), op.get("size")
        if op.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not is_sha256(oid):
            raise BadRequestError(f"lfsFile {path} needs the sha256 of its content as oid")
        if size is not None and not _is_size(size):
            raise BadRequestError(f"lfsFile {path}: size must be a non-negative integer")
        # a copy names an object already stored and omits its size (-1 until looked up)
        return FileChange(path, "add", oid, -1 if size is None else size, lfs=True)
    return FileChange(path, "delete" if key == "deletedFile" else "delete_folder")


def _store_changes(hub: Hub, principal: Principal, ops: list[dict[str, Any]]) -> list[FileChange]:
    """Validate every operation before storing anything, then store the inline files: a bad operation (or a bad
    commit later) leaves only unreferenced blobs behind, never a partial commit. A copy (an LFS file without size)
    gets the size of the object it names, if stored and the caller has it (see ``possession``)."""
    pending = [_change(op, hub.settings.max_inline_bytes) for op in ops]
    stored = [repos.put_bytes(hub.store, item[1]) if isinstance(item, tuple) else "" for item in pending]
    changes: list[FileChange] = []
    with hub.db.write() if any(stored) else hub.db.read() as session:
        for item, sha256 in zip(pending, stored, strict=True):
            if isinstance(item, tuple):
                path, data = item
                repos.record_blob(session, sha256, len(data))
                changes.append(FileChange(path, "add", sha256, len(data), git_blob_sha1(data)))
            elif item.kind == "add":
                size: int | None = item.size
                if item.size < 0:
                    size = possession.stored_sizes(session, principal, [item.sha256]).get(item.sha256)
                if size is None:
                    raise BadRequestError(f"LFS object {item.sha256} to copy to {item.path} is not stored")
                changes.append(replace(item, size=size, git_oid=git_blob_sha1(lfs_pointer(item.sha256, size))))
            else:
                changes.append(item)
    return changes


def _commit(
    hub: Hub,
    principal: Principal,
    repo_id: int,
    rev: str,
    raw: bytes,
    *,
    create_pr: bool = False,
    on_recorded: pull_requests.Recorded | None = None,
) -> tuple[str, int | None]:
    """Commit on ``rev`` (a branch, or a pull request's ``refs/pr/N``), or with ``create_pr`` open a pull request
    onto ``rev`` holding the commit; return the commit and the pull request's number, if any (``on_recorded`` runs
    in the transaction recording the commit on the pull request)."""
    header, ops = _parse_ndjson(raw, hub.settings)
    changes = _store_changes(hub, principal, ops)
    xet_uploads = {c.sha256: c.size for c in changes if c.kind == "add" and c.lfs}
    with tempfile.TemporaryDirectory(prefix="openckpt-commit-") as scratch:  # Xet files: verified and copied at once
        copies = possession.require(hub.db, hub.store, principal, xet_uploads, copies=Path(scratch))
        gate.check_changes(hub.db, hub.store, hub.settings, changes, copies, repo_id=repo_id)  # trust: scan the files
    governance.enforce_policy(hub.db, hub.store, hub.settings, repo_id, rev, changes)  # the owner's license policy
    title, num = header.get("summary") or "Update", pull_requests.pr_num(rev)
    if create_pr:  # the pull request's ref starts at the target's head (or parentCommit), then the commit moves it
        num = pull_requests.open_pr(
            hub.db,
            principal,
            repo_id,
            rev,
            title=title,
            description=header.get("description") or "",
            base=header.pop("parentCommit", None),
        )
    try:
        commit_id, changed = create_commit(
            hub.db,
            repo_id,
            f"refs/pr/{num}" if create_pr else rev,
            changes,
            title=title,
            message=header.get("description") or "",
            author=principal.name,
            parent_commit=header.get("parentCommit"),
        )
    except Exception:
        if create_pr and num is not None:
            pull_requests.drop_pr(hub.db, repo_id, num)
        raise
    if num is not None and changed:
        pull_requests.record_commit(
            hub.db, repo_id, num, commit_id, title=title, author=principal.name, on_recorded=on_recorded
        )
    if rev == repos.DEFAULT_BRANCH:
        repos.refresh_metadata(hub.db, hub.store, repo_id)
        provenance.verify_later(hub.db, hub.store, hub.settings, repo_id, commit_id)  # weights against the bases
    if hub.settings.xet_ingest:  # whole blobs become xorbs in the background (see xet_ingest)
        added = [c.sha256 for c in changes if c.kind == "add" and c.size >= xet_ingest.MIN_SIZE]
        if added:
            xet_ingest.ingest_later(hub.db, hub.store, hub.settings, added)
    return commit_id, num


def _writable_branch(
    hub: Hub, principal: Principal, repo_type: str, repo_id: str, rev: str, *, create_pr: bool = False
) -> tuple[Repo, str]:
    """The repo, if the caller may write to it (to a pull request's ``refs/pr/N``: its author or a writer; to open
    one: whoever may take part in its discussions), and the head of ``rev`` now."""
    with hub.db.read() as session:
        num = pull_requests.pr_num(rev)
        repo = repos.find_repo(session, principal, repo_type, repo_id, write=not create_pr and num is None)
        if num is not None:
            pull_requests.check_pr_commit(session, principal, repo, num)
        elif create_pr:
            discussions.require_participant(session, principal, repo)
        return repo, resolve_revision(session, repo, rev).id


def _notify_commit(request: Request, repo: Repo, branch: str, old: str, new: str) -> None:
    update = RefUpdate(f"refs/heads/{branch}", old, new)
    notify(request, repo_event(repo, "update", "repo.content", head_sha=new, updated_refs=(update,)))


@router.post("/api/{plural}/{owner}/{name}/commit/{rest:path}")
async def commit(request: Request, plural: str, owner: str, name: str, rest: str) -> dict[str, Any]:
    rev, _ = rev_and_path(request, 5)
    create_pr = request.query_params.get("create_pr", "").lower() in ("1", "true")
    principal = require_principal(request)
    hub = hub_of(request)
    repo_type, repo_id = repo_type_of(plural), repo_id_of(owner, name)
    repo, head = await run_in_threadpool(_writable_branch, hub, principal, repo_type, repo_id, rev, create_pr=create_pr)
    raw = await read_bounded(request, hub.settings.max_commit_bytes)
    with commit_events(request, repo, rev, head):  # its webhook deliveries: in the commit's own transaction
        recorded = pr_recorded(request, opened=create_pr)  # the pull request's discussion event
        commit_id, num = await run_in_threadpool(
            partial(_commit, create_pr=create_pr, on_recorded=recorded), hub, principal, repo.id, rev, raw
        )
    wake(request)
    url = f"{str(request.base_url).rstrip('/')}/{REPO_TYPE_PREFIX[repo_type]}{repo_id}"
    return {
        "commitOid": commit_id,
        "commitUrl": f"{url}/commit/{commit_id}",
        "pullRequestUrl": f"{url}/discussions/{num}" if create_pr else None,
    }


def _squash(
    hub: Hub, principal: Principal, repo_type: str, repo_id: str, branch: str, title: str
) -> tuple[Repo, str, str]:
    repo, head = _writable_branch(hub, principal, repo_type, repo_id, branch)
    commit_id = squash_history(hub.db, repo.id, branch, title=title, author=principal.name)
    if branch == repos.DEFAULT_BRANCH:
        repos.refresh_metadata(hub.db, hub.store, repo.id)  # the lineage names the head commit
    return repo, head, commit_id


@router.post("/api/{plural}/{owner}/{name}/super-squash/{rest:path}")
async def super_squash(request: Request, plural: str, owner: str, name: str, rest: str) -> dict[str, Any]:
    """Replace the history of a branch by one commit of its current files (``HfApi.super_squash_history``)."""
    branch = "/".join(rev_and_path(request, 5)).strip("/")  # quoted as one segment by clients, or not
    principal = require_principal(request)
    body = await read_json(request, optional=True)
    if not isinstance(body, dict) or not isinstance(body.get("message", ""), str):
        raise BadRequestError("expected a JSON body {message: string}")
    title = body.get("message", "").strip() or f"Super-squash branch '{branch}'"
    hub = hub_of(request)
    repo_type, repo_id = repo_type_of(plural), repo_id_of(owner, name)
    repo, head, commit_id = await run_in_threadpool(_squash, hub, principal, repo_type, repo_id, branch, title)
    _notify_commit(request, repo, branch, head, commit_id)
    base = str(request.base_url).rstrip("/")
    return {"commitOid": commit_id, "commitUrl": f"{base}/{REPO_TYPE_PREFIX[repo_type]}{repo_id}/commit/{commit_id}"}
