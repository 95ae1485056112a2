"""Buckets, as ``huggingface_hub``'s bucket API and the ``hf buckets`` / ``hf sync`` commands call them.

``/api/buckets/{namespace}`` lists, ``/api/buckets/{owner}/{name}`` creates (POST), describes (GET) and deletes;
``…/settings``, ``…/tree[/{prefix}]`` (paged by ``Link``), ``…/paths-info``, ``…/batch`` (NDJSON of ``addFile``,
``copyFile``, ``deleteFile``), ``…/lfs-files/duplicate`` (publish files to a repo by Xet hash), ``…/xet-write-token``
and ``…/xet-read-token`` (CAS tokens for the bucket), and
``/buckets/{owner}/{name}/resolve/{path}`` (the Xet headers on HEAD, the bytes on GET). Moves arrive at
``/api/repos/move`` with ``type: bucket`` (``routes/repos.py`` hands them to :func:`move`).

Registered before the repos routes, whose ``/api/{plural}/{owner}/{name}`` would otherwise take these paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, ConflictError, EntryNotFoundError, PayloadTooLargeError
from openckpt.hub.bodies import ndjson_lines, read_bounded, read_json
from openckpt.hub.context import Hub
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Bucket, BucketFile
from openckpt.hub.deps import HubDep, PrincipalDep, UserDep
from openckpt.hub.error_response import header_text
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.buckets import files as bucket_files
from openckpt.hub.services.buckets import publish as bucket_publish
from openckpt.hub.services.buckets import registry as buckets
from openckpt.hub.services.stored_files import file_plan, raw_blobs, read_file
from openckpt.hub.services.xet.reconstruction import byte_range
from openckpt.hub.services.xet.tokens import CAS_PATH, issue_token
from openckpt.hub.views import iso
from openckpt.protocol import ERROR_CODE, ERROR_MESSAGE

__all__ = ["move", "router"]

router = APIRouter()
MIN_TTL = 15 * 60
"""As for repos: clients refresh Xet tokens shortly before they expire, never on a 401."""
MAX_OPERATIONS = 5000
"""Lines one batch may have (the stock client sends at most 1000)."""


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _url(request: Request, bucket_id: str) -> str:
    return f"{_base(request)}/buckets/{bucket_id}"


def _info_json(summary: buckets.BucketSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "private": summary.private,
        "createdAt": iso(summary.created_at),
        "updatedAt": iso(summary.updated_at),
        "size": summary.size,
        "totalFiles": summary.total_files,
    }


def _file_json(row: BucketFile) -> dict[str, Any]:
    return {
        "type": "file",
        "path": row.path,
        "size": row.size,
        "xetHash": row.xet_hash,
        "mtime": iso(datetime.fromtimestamp(row.mtime / 1000, UTC)),
        "uploadedAt": iso(row.uploaded_at),
    }


def _entry_json(entry: BucketFile | str) -> dict[str, Any]:
    return {"type": "directory", "path": entry} if isinstance(entry, str) else _file_json(entry)


def _visibility(body: Any) -> bool:
    if not isinstance(body, dict):
        raise BadRequestError("expected a JSON object {visibility?: public|private}")
    visibility = body.get("visibility")
    if visibility is not None and visibility not in ("public", "private"):
        raise BadRequestError("visibility must be 'public' or 'private'")
    return visibility == "private" if visibility is not None else bool(body.get("private"))


# ---- buckets ----------------------------------------------------------------------------------------------------


@router.post("/api/buckets/{owner}/{name}")
async def create(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> JSONResponse:
    """``create_bucket``: the new bucket's URL; 409 (with the URL, read by ``exist_ok``) if it exists."""
    private = _visibility(await read_json(request, optional=True))
    bucket_id = f"{buckets.owner_name(user, owner)}/{name}"
    try:
        await run_in_threadpool(partial(buckets.create_bucket, hub.db, user, owner=owner, name=name, private=private))
    except ConflictError as e:
        headers = {ERROR_CODE: e.code, ERROR_MESSAGE: header_text(str(e))}
        return JSONResponse({"error": str(e), "url": _url(request, bucket_id)}, 409, headers=headers)
    return JSONResponse({"url": _url(request, bucket_id), "name": bucket_id, "id": bucket_id})


@router.get("/api/buckets/{owner}/{name}")
def info(hub: HubDep, principal: PrincipalDep, owner: str, name: str) -> dict[str, Any]:
    with hub.db.read() as session:
        bucket = buckets.find_bucket(session, f"{owner}/{name}", principal=principal)
        return _info_json(buckets.summarize(session, [bucket])[0])


@router.get("/api/buckets/{namespace}")
def list_all(hub: HubDep, principal: PrincipalDep, namespace: str, search: str | None = None) -> list[dict[str, Any]]:
    with hub.db.read() as session:
        found = buckets.list_buckets(session, principal, namespace=namespace, search=search)
        return [_info_json(s) for s in buckets.summarize(session, found)]


@router.delete("/api/buckets/{owner}/{name}")
def delete(hub: HubDep, user: UserDep, owner: str, name: str) -> Response:
    buckets.delete_bucket(hub.db, user, bucket_id=f"{owner}/{name}")
    return Response(status_code=200)


@router.put("/api/buckets/{owner}/{name}/settings")
async def settings(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> dict[str, Any]:
    body = await read_json(request)
    private = body.get("private") if isinstance(body, dict) else None
    if private is not None and not isinstance(private, bool):
        raise BadRequestError("expected JSON {private: bool}")
    await run_in_threadpool(
        partial(buckets.update_settings, hub.db, user, bucket_id=f"{owner}/{name}", private=private)
    )
    return {}


def move(db: Database, principal: Principal, *, base: str, from_id: str, to_id: str) -> JSONResponse:
    """``move_bucket`` (``POST /api/repos/move`` with ``type: bucket``): the bucket's new URL."""
    bucket: Bucket = buckets.move_bucket(db, principal, from_id=from_id, to_id=to_id)
    return JSONResponse({"url": f"{base}/buckets/{bucket.bucket_id}", "name": bucket.bucket_id})


# ---- files ------------------------------------------------------------------------------------------------------


def _tree(request: Request, hub: Hub, principal: Principal | None, bucket_id: str, prefix: str) -> Response:
    recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
    cursor = request.query_params.get("cursor")
    with hub.db.read() as session:
        bucket = buckets.find_bucket(session, bucket_id, principal=principal)
        page, following = bucket_files.list_tree(session, bucket.id, prefix=prefix, recursive=recursive, cursor=cursor)
        body = [_entry_json(e) for e in page]
    headers: dict[str, str] = {}
    if following is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", following)]
        path = f"/api/buckets/{bucket_id}/tree" + (f"/{quote(prefix, safe='')}" if prefix else "")
        headers["Link"] = f'<{_base(request)}{path}?{urlencode(query)}>; rel="next"'
    return JSONResponse(body, headers=headers)


@router.get("/api/buckets/{owner}/{name}/tree")
def tree(request: Request, hub: HubDep, principal: PrincipalDep, owner: str, name: str) -> Response:
    return _tree(request, hub, principal, f"{owner}/{name}", "")


@router.get("/api/buckets/{owner}/{name}/tree/{prefix:path}")
def tree_under(request: Request, hub: HubDep, principal: PrincipalDep, owner: str, name: str, prefix: str) -> Response:
    return _tree(request, hub, principal, f"{owner}/{name}", prefix)


@router.post("/api/buckets/{owner}/{name}/paths-info")
async def paths_info(
    request: Request, hub: HubDep, principal: PrincipalDep, owner: str, name: str
) -> list[dict[str, Any]]:
    body = await read_json(request)
    paths = body.get("paths") if isinstance(body, dict) else None
    if not isinstance(paths, list):
        raise BadRequestError("expected JSON {paths: [path, ...]}")

    def run() -> list[dict[str, Any]]:
        with hub.db.read() as session:
            bucket = buckets.find_bucket(session, f"{owner}/{name}", principal=principal)
            return [_file_json(row) for row in bucket_files.paths_info(session, bucket.id, paths=paths)]

    return await run_in_threadpool(run)


@router.post("/api/buckets/{owner}/{name}/batch")
async def batch(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> JSONResponse:
    """``batch_bucket_files``: 200 with the operations that failed (``failed``), 422 if all of them did."""
    raw = await read_bounded(request, max(hub.settings.max_json_bytes, MAX_OPERATIONS * 2048))
    lines = ndjson_lines(raw, line_limit=8192, max_lines=MAX_OPERATIONS)
    ops = [bucket_files.parse_operation(item) for _, item in lines]
    if len(ops) > MAX_OPERATIONS:
        raise PayloadTooLargeError(f"more than {MAX_OPERATIONS} operations in one batch")
    run = partial(bucket_files.apply_batch, hub.db, hub.settings, principal=user, bucket_id=f"{owner}/{name}", ops=ops)
    failed = await run_in_threadpool(run)
    return JSONResponse({"failed": failed}, status_code=422 if ops and len(failed) == len(ops) else 200)


@router.post("/api/buckets/{owner}/{name}/lfs-files/duplicate")
async def duplicate(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> dict[str, Any]:
    """Publish bucket files to a repo by Xet hash (see :mod:`openckpt.hub.services.buckets.publish`): ``failed``
    lists the files that were not."""
    body = await read_json(request)
    target = body.get("target") if isinstance(body, dict) else None
    kind, repo_id = (target.get("type"), target.get("name")) if isinstance(target, dict) else (None, None)
    if not isinstance(kind, str) or not isinstance(repo_id, str):
        raise BadRequestError("expected JSON {target: {type, name}, files: [{xetHash, sha256, filename}]}")
    files = bucket_publish.parse_files(body.get("files"))
    run = partial(
        bucket_publish.duplicate_to_repo,
        hub.db,
        hub.store,
        principal=user,
        bucket_id=f"{owner}/{name}",
        target=(kind, repo_id),
        files=files,
    )
    return {"failed": await run_in_threadpool(run)}


# ---- Xet --------------------------------------------------------------------------------------------------------


def _xet_token(request: Request, hub: Hub, principal: Principal | None, bucket_id: str, scope: str) -> JSONResponse:
    with hub.db.read() as session:
        bucket = buckets.find_bucket(session, bucket_id, principal=principal, write=scope == "write")
    ttl = max(hub.settings.signed_url_ttl, MIN_TTL)
    minted_by = principal.token_id if principal is not None else None
    token, expires = issue_token(hub.settings.secret, scope, 0, ttl, minted_by=minted_by, bucket=bucket.id)
    cas_url = _base(request) + CAS_PATH
    headers = {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(expires)}
    return JSONResponse({"accessToken": token, "exp": expires, "casUrl": cas_url}, headers=headers)


@router.get("/api/buckets/{owner}/{name}/xet-write-token")
def write_token(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> JSONResponse:
    return _xet_token(request, hub, user, f"{owner}/{name}", "write")


@router.get("/api/buckets/{owner}/{name}/xet-read-token")
def read_token(request: Request, hub: HubDep, principal: PrincipalDep, owner: str, name: str) -> JSONResponse:
    return _xet_token(request, hub, principal, f"{owner}/{name}", "read")


@router.api_route("/buckets/{owner}/{name}/resolve/{path:path}", methods=["GET", "HEAD"])
def resolve(request: Request, hub: HubDep, principal: PrincipalDep, owner: str, name: str, path: str) -> Response:
    """A bucket file: its size and Xet hash (with the read-token route) on HEAD, its bytes (or a range) on GET."""
    bucket_id = f"{owner}/{name}"
    with hub.db.read() as session:
        bucket = buckets.find_bucket(session, bucket_id, principal=principal)
        found = bucket_files.paths_info(session, bucket.id, paths=[path])
        if not found:
            raise EntryNotFoundError(f"{path} does not exist in bucket {bucket.bucket_id}")
        row = found[0]
        plan = file_plan(session, row.xet_hash) if request.method == "GET" else None
    token_route = f"{_base(request)}/api/buckets/{bucket.bucket_id}/xet-read-token"
    headers = {
        "X-Xet-Hash": row.xet_hash,
        "Link": f'<{token_route}>; rel="xet-auth"',
        "X-Linked-Size": str(row.size),
        "ETag": f'"{row.xet_hash}"',
        "Accept-Ranges": "bytes",
        "Content-Type": row.content_type or "application/octet-stream",
    }
    if request.method == "HEAD":
        return Response(status_code=200, headers={**headers, "Content-Length": str(row.size)})
    if plan is None:
        raise EntryNotFoundError(f"the bytes of {path} are not stored")
    status, first, last = 200, 0, row.size - 1
    if request.headers.get("range") and row.size:
        first, last = byte_range(request.headers.get("range"), row.size)
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{row.size}"
    headers["Content-Length"] = str(last - first + 1)
    body = read_file(raw_blobs(hub.store), plan, start=first, end=last + 1)
    return StreamingResponse(body, status_code=status, headers=headers)
