"""The Xet CAS on the hub's own origin (``<origin>/cas``): xorb and shard uploads, reconstructions, global dedup,
signed transfer URLs; plus the telemetry clients post at the origin's root. Optional routes answer 404 (opt out)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import (
    EntryNotFoundError,
    ForbiddenError,
    PayloadTooLargeError,
    RangeNotSatisfiableError,
    XetUploadError,
)
from openckpt.hub.context import hub_of
from openckpt.hub.db.models import Xorb
from openckpt.hub.services import compression as storage_compression
from openckpt.hub.services import delta_reads
from openckpt.hub.services.buckets import files as bucket_files
from openckpt.hub.services.lfs.transfers import check_signature
from openckpt.hub.services.stored_files import file_plan, raw_blobs
from openckpt.hub.services.xet import cas
from openckpt.hub.services.xet import dedup as xet_dedup
from openckpt.hub.services.xet import meta as xet_meta
from openckpt.hub.services.xet.reconstruction import byte_range, reconstruction
from openckpt.hub.services.xet.tokens import CAS_PATH, HUB_REPO, TRANSFER_PATH, CasToken, check_token, transfer_url
from openckpt.protocol import ERROR_CODE
from openckpt.xet.xorb import MAX_XORB_SIZE, new_buffer

router = APIRouter()
PREFIXES = ("default", "default-merkledb")
"""hf_xet sends ``default``; the docs say ``default-merkledb``: accept both."""


def _token(request: Request, *, write: bool = False) -> CasToken:
    hub = hub_of(request)
    return check_token(hub.settings.secret, request.headers.get("authorization"), db=hub.db, write=write)


def _unsupported() -> JSONResponse:
    """The answer that makes a client fall back to the routes it must support."""
    return JSONResponse({"error": "not supported by this CAS"}, status_code=404, headers={ERROR_CODE: "NotSupported"})


def _prefix(prefix: str) -> None:
    if prefix not in PREFIXES:
        raise EntryNotFoundError(f"unknown CAS prefix {prefix!r}")


def _declared_size(request: Request, limit: int, what: str) -> int | None:
    """The request's Content-Length, if it has one; a 413 if it is over ``limit``."""
    declared = request.headers.get("content-length")
    size = int(declared) if declared is not None and declared.isdigit() else None
    if size is not None and size > limit:
        raise PayloadTooLargeError(f"{what} of {declared} bytes is over the limit of {limit}")
    return size


async def _body(request: Request, limit: int, what: str) -> bytes | memoryview:
    """The request body, up to ``limit`` bytes. With a Content-Length, each part is copied into one buffer of that
    size as it arrives (no join of the whole body on the event loop)."""
    size = _declared_size(request, limit, what)
    if size is not None:
        view, at = new_buffer(size), 0
        async for part in request.stream():
            if at + len(part) > size:
                raise XetUploadError(f"{what} is longer than its Content-Length of {size} bytes")
            view[at : at + len(part)] = part
            at += len(part)
        if at != size:
            raise XetUploadError(f"{what} ended after {at} of its {size} bytes")
        return view
    parts, total = [], 0
    async for part in request.stream():
        total += len(part)
        if total > limit:
            raise PayloadTooLargeError(f"{what} is over the limit of {limit} bytes")
        parts.append(part)
    return b"".join(parts)


@router.post(CAS_PATH + "/v1/xorbs/{prefix}/{xorb}")
async def upload_xorb(request: Request, prefix: str, xorb: str) -> dict[str, bool]:
    _prefix(prefix)
    await run_in_threadpool(_token, request, write=True)
    hub = hub_of(request)
    size = _declared_size(request, MAX_XORB_SIZE, "xorb")
    inserted = await cas.receive_xorb(hub.db, raw_blobs(hub.store), xorb, request.stream(), size_hint=size)
    return {"was_inserted": inserted}


@router.post(CAS_PATH + "/v1/xorb-grants/{prefix}/{xorb}")
def xorb_grant(prefix: str, xorb: str) -> JSONResponse:
    return _unsupported()


@router.post(CAS_PATH + "/v2/shards")
def upload_shard_v2() -> JSONResponse:
    return _unsupported()


@router.post(CAS_PATH + "/v1/shards")
async def upload_shard(request: Request) -> dict[str, int]:
    token = await run_in_threadpool(_token, request, write=True)
    data = await _body(request, cas.MAX_SHARD_BYTES, "shard")
    repo = token.repo if token.repo != HUB_REPO else None  # the hub's own ingestion uploads for no repo
    db, by = hub_of(request).db, token.minted_by or None  # the files are the uploads of that token's account
    result = await run_in_threadpool(partial(cas.register_shard, db, data, repo=repo, minted_by=by))
    return {"result": result}


@router.get(CAS_PATH + "/v1/chunks/{prefix}/{chunk}")
def dedup_query(request: Request, prefix: str, chunk: str) -> Response:
    _prefix(prefix)
    token = _token(request)
    cas.parse_hash(chunk)
    repo = token.repo if token.repo != HUB_REPO and token.bucket is None else None
    key = xet_dedup.token_key(request.headers.get("authorization")) if token.can_write else None
    shard = xet_dedup.dedup_shard(
        hub_of(request).db, chunk, repo=repo, minted_by=token.minted_by or None, session_key=key
    )
    if shard is None:
        return JSONResponse({"error": "chunk not known"}, status_code=404, headers={ERROR_CODE: "EntryNotFound"})
    return Response(shard, media_type="application/octet-stream")


@router.get(CAS_PATH + "/v2/reconstructions/{file_hash}")
def reconstruction_v2(file_hash: str) -> JSONResponse:
    return _unsupported()


@router.get(CAS_PATH + "/v1/reconstructions/{file_hash}")
def reconstruction_v1(request: Request, file_hash: str) -> Response:
    token = _token(request)
    cas.parse_hash(file_hash)
    hub = hub_of(request)
    with hub.db.read() as session:
        if token.bucket is not None:  # a bucket's token reads the files of that bucket
            allowed = bucket_files.holds(session, token.bucket, xet_hash=file_hash)
        else:
            allowed = xet_meta.may_reconstruct(session, hub.settings, token.repo, file_hash)
        plan = file_plan(session, file_hash) if allowed else None
    if plan is None:
        raise EntryNotFoundError(f"no file {file_hash} in this repo")
    try:
        first, last = byte_range(request.headers.get("range"), plan.size)
    except RangeNotSatisfiableError as e:
        raise RangeNotSatisfiableError(str(e), headers={"Content-Range": f"bytes */{plan.size}"}) from None
    base = str(request.base_url).rstrip("/")

    def url(xorb: str, start: int, end: int) -> str:
        return transfer_url(hub.settings.secret, base, xorb, start, end, hub.settings.signed_url_ttl)

    body: dict[str, Any] = reconstruction(plan, first, last, url)
    return JSONResponse(body)


@router.get(TRANSFER_PATH + "/{xorb}/{span}")
def transfer(request: Request, xorb: str, span: str) -> Response:
    """Serialized bytes of a xorb, within the span the URL was signed for; no Authorization: the URL is the grant."""
    hub = hub_of(request)
    q = request.query_params
    check_signature(hub.settings.secret, "GET", f"{TRANSFER_PATH}/{xorb}/{span}", q.get("exp"), q.get("sig"))
    lo, _, hi = span.partition("-")
    allowed = (int(lo), int(hi))
    with hub.db.read() as session:
        row = session.get(Xorb, xorb)
        bases = delta_reads.bases_of(session, [xorb])[xorb] if row and row.encoding == delta_reads.DELTA else {}
    if row is None:
        raise EntryNotFoundError(f"xorb {xorb} is not stored")
    first, last = allowed
    if request.headers.get("range"):
        try:
            first, last = byte_range(request.headers.get("range"), row.serialized_size)
        except RangeNotSatisfiableError:
            raise ForbiddenError("the range asked is outside what this URL grants") from None
    if first < allowed[0] or last > allowed[1]:
        raise ForbiddenError("the range asked is outside what this URL grants")
    headers = {"Content-Range": f"bytes {first}-{last}/{row.serialized_size}", "Content-Length": str(last - first + 1)}
    if row.encoding in (storage_compression.PACKED, delta_reads.DELTA):  # served uncompressed, decoded from frames
        if not storage_compression.whole_chunks(raw_blobs(hub.store), row.blob_sha256, allowed[0], allowed[1] + 1):
            # signed for the layout as uploaded, before the xorb was packed: as an expired URL, hf_xet asks again
            raise ForbiddenError("this xorb's layout changed since the URL was made: ask for its reconstruction again")
        if row.encoding == delta_reads.DELTA:  # and its bases XORed back
            body = delta_reads.served(raw_blobs(hub.store), row.blob_sha256, first, last + 1, bases=bases)
        else:
            body = storage_compression.served(raw_blobs(hub.store), row.blob_sha256, first, last + 1)
    else:
        body = raw_blobs(hub.store).read(row.blob_sha256, first, last + 1)
    return StreamingResponse(body, status_code=206, headers=headers, media_type="application/octet-stream")


@router.post("/v1/telemetry")
def telemetry() -> dict[str, str]:
    """Clients post their telemetry here (at the origin's root, whatever the CAS path); accepted and dropped."""
    return {}
