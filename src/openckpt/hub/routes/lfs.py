"""The Git LFS batch API (basic and multipart transfers) and the signed transfer endpoints it hands out."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, EntryNotFoundError, PayloadTooLargeError
from openckpt.hub.bodies import read_json
from openckpt.hub.context import Hub, repo_id_of
from openckpt.hub.deps import HubDep, UserDep
from openckpt.hub.services import possession, preflight, pull_requests
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.lfs import parts as lfs_parts
from openckpt.hub.services.lfs.transfers import check_signature, receive_blob, sign
from openckpt.hub.settings import Settings
from openckpt.store.blobs import is_sha256

router = APIRouter()
LFS_JSON = "application/vnd.git-lfs+json"
MAX_BATCH_OBJECTS = 1000
"""Objects one batch request may name (git-lfs sends 100, huggingface_hub 256); more are a 413, as the LFS spec says."""
MAX_BATCH_PARTS = 100_000
"""Signed part URLs one batch answer may hold (some 25 MB of JSON); more are a 413, never a worker busy signing."""


def _object_actions(
    settings: Settings, base: str, sha256: str, size: int, *, account: int, verify_path: str
) -> dict[str, Any]:
    """Where to send one object: signed URLs made out to ``account`` (the upload is recorded as the caller's: proof of
    possession), one per part from the multipart threshold on."""
    ttl = settings.signed_url_ttl
    verify = {"href": base + verify_path}
    if size >= settings.multipart_threshold:
        chunk = lfs_parts.part_size(size, settings.multipart_chunk_size)
        header: dict[str, str] = {"chunk_size": str(chunk)}
        for number in range(1, -(-size // chunk) + 1):
            header[str(number)] = base + sign(settings.secret, "PUT", f"/api/lfs/part/{sha256}/{size}/{number}", ttl)
        complete = base + sign(settings.secret, "POST", f"/api/lfs/complete/{sha256}/{size}", ttl, account=account)
        return {"upload": {"href": complete, "header": header}, "verify": verify}
    href = base + sign(settings.secret, "PUT", f"/api/lfs/upload/{sha256}/{size}", ttl, account=account)
    return {"upload": {"href": href}, "verify": verify}


async def _batch(request: Request, hub: Hub, user: Principal, repo_type: str, owner: str, name: str) -> JSONResponse:
    """The batch API; the caller is known (a 401 before reading the body: the database may be busy)."""
    repo_id = repo_id_of(owner, name.removesuffix(".git"))
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("operation") not in ("upload", "download"):
        raise BadRequestError("expected an LFS batch request with operation 'upload' or 'download'")
    objects = body.get("objects") or []
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise BadRequestError("objects must be a list of {oid, size}")
    if len(objects) > MAX_BATCH_OBJECTS:
        raise PayloadTooLargeError(f"{len(objects)} objects in one batch request: at most {MAX_BATCH_OBJECTS}")
    oids = [str(o.get("oid")) for o in objects]
    write = body["operation"] == "upload"
    ref = body.get("ref")  # none when huggingface_hub uploads the files of a new pull request
    ref_name = ref.get("name") if isinstance(ref, dict) else None
    proposing = ref_name is None or pull_requests.pr_num(str(ref_name)) is not None
    find = partial(
        preflight.stored_for_batch, repo_type=repo_type, repo_id=repo_id, oids=oids, write=write, proposing=proposing
    )
    stored = await run_in_threadpool(find, hub.db, user)
    settings, out, uploads = hub.settings, [], []
    for obj in objects:
        oid, size = str(obj.get("oid", "")), obj.get("size")
        if not is_sha256(oid) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            out.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid oid or size"}})
        elif size > settings.max_file_size:  # per object, as the LFS spec and the Hub answer it
            too_large = f"{size} bytes is over the hub's maximum file size of {settings.max_file_size} bytes"
            out.append({"oid": oid, "size": size, "error": {"code": 422, "message": too_large}})
        elif stored.get(oid) == size:
            out.append({"oid": oid, "size": size})  # already stored: nothing to upload
        elif body["operation"] == "download":
            out.append({"oid": oid, "size": size, "error": {"code": 404, "message": "object not found"}})
        else:
            uploads.append(len(out))
            out.append({"oid": oid, "size": size})
    parts = sum(
        _part_count(out[i]["size"], settings.multipart_threshold, settings.multipart_chunk_size) for i in uploads
    )
    if parts > MAX_BATCH_PARTS:  # before signing any
        raise PayloadTooLargeError(f"the objects of this batch need {parts} upload parts: over {MAX_BATCH_PARTS}")
    base, verify_path = str(request.base_url).rstrip("/"), f"/api/lfs/verify/{repo_type}/{repo_id}"
    for i in uploads:
        oid, size = out[i]["oid"], out[i]["size"]
        out[i]["actions"] = _object_actions(settings, base, oid, size, account=user.account_id, verify_path=verify_path)
    return JSONResponse({"transfer": "basic", "objects": out, "hash_algo": "sha256"}, media_type=LFS_JSON)


def _part_count(size: int, threshold: int, chunk_size: int) -> int:
    return -(-size // lfs_parts.part_size(size, chunk_size)) if size >= threshold else 1


@router.post("/{owner}/{name}/info/lfs/objects/batch")
async def batch_model(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> JSONResponse:
    return await _batch(request, hub, user, "model", owner, name)


@router.post("/datasets/{owner}/{name}/info/lfs/objects/batch")
async def batch_dataset(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> JSONResponse:
    return await _batch(request, hub, user, "dataset", owner, name)


@router.post("/spaces/{owner}/{name}/info/lfs/objects/batch")
async def batch_space(request: Request, hub: HubDep, user: UserDep, owner: str, name: str) -> JSONResponse:
    return await _batch(request, hub, user, "space", owner, name)


def _signed(request: Request, hub: Hub, method: str) -> int | None:
    """Check the transfer URL's signature; the account it was made out to, if any."""
    q = request.query_params
    account = q.get("account")
    check_signature(hub.settings.secret, method, request.url.path, q.get("exp"), q.get("sig"), account=account)
    return int(account) if account is not None and account.isdigit() else None


@router.put("/api/lfs/upload/{sha256}/{size}")
async def upload(request: Request, hub: HubDep, sha256: str, size: int) -> Response:
    account = _signed(request, hub, "PUT")
    await receive_blob(hub.store, hub.db, request.stream(), sha256, size)
    if account is not None:  # the bytes verified: the account has them
        await run_in_threadpool(possession.record_upload, hub.db, account, sha256)
    return Response(status_code=200)


@router.put("/api/lfs/part/{sha256}/{size}/{number}")
async def upload_part(request: Request, hub: HubDep, sha256: str, size: int, number: int) -> Response:
    _signed(request, hub, "PUT")
    limit = lfs_parts.part_size(size, hub.settings.multipart_chunk_size)
    etag = await lfs_parts.receive_part(hub.store, hub.db, sha256, size, number, request.stream(), limit)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


@router.post("/api/lfs/complete/{sha256}/{size}")
async def complete(request: Request, hub: HubDep, sha256: str, size: int) -> Response:
    account = _signed(request, hub, "POST")
    body = await read_json(request)
    parts = body.get("parts") if isinstance(body, dict) else None
    if not isinstance(parts, list):
        raise BadRequestError("expected {oid, parts: [{partNumber, etag}]}")
    try:
        numbers = sorted(int(p["partNumber"]) for p in parts)
    except (TypeError, KeyError, ValueError):
        raise BadRequestError("each part is {partNumber, etag}") from None
    joined = await lfs_parts.complete(hub.store, hub.db, sha256, size, numbers)
    if joined and account is not None:  # this upload's parts made the verified bytes: the account has them
        await run_in_threadpool(possession.record_upload, hub.db, account, sha256)
    return Response(status_code=200)


@router.post("/api/lfs/verify/{repo_type}/{owner}/{name}")
async def verify(request: Request, hub: HubDep, user: UserDep, repo_type: str, owner: str, name: str) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequestError("expected {oid, size}")
    oid, size = str(body.get("oid", "")), body.get("size")
    find = partial(preflight.verified_size, repo_type=repo_type, repo_id=repo_id_of(owner, name), oid=oid)
    found = await run_in_threadpool(find, hub.db, user)
    if found is None or found != size:
        raise EntryNotFoundError(f"LFS object {oid} ({size} bytes) is not stored")
    return Response(status_code=200)
