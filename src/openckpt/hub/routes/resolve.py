"""``/resolve``: file downloads with the headers the Hub client needs, and Range requests."""

from __future__ import annotations

import asyncio
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from openckpt.errors import BadRequestError, EntryNotFoundError, IntegrityError
from openckpt.hub.context import Hub, rev_and_path
from openckpt.hub.db.models import Repo
from openckpt.hub.deps import HubDep, PrincipalDep, RepoIdDep
from openckpt.hub.services import access, download_stats, gate, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.trees import file_at
from openckpt.hub.services.xet import meta as xet_meta
from openckpt.protocol import LINKED_ETAG, LINKED_SIZE, REPO_COMMIT

router = APIRouter()


READ_CHUNK = 8 << 20
_READERS = ThreadPoolExecutor(16, thread_name_prefix="openckpt-read")


class _LocalBlobResponse(Response):
    """Bytes ``[start, end)`` of a local file, read in large chunks in a worker thread: the next chunk is read while
    the current one is being sent. Stops reading when the client goes away."""

    def __init__(self, path: Path, fd: int, start: int, end: int, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(status_code=status_code, headers=headers, media_type="application/octet-stream")
        self.path, self.fd, self.start, self.end = path, fd, start, end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope["method"] == "HEAD" or self.start >= self.end:
            os.close(self.fd)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with anyio.create_task_group() as group:

            async def pump() -> None:
                await self._pump(send)
                group.cancel_scope.cancel()

            group.start_soon(pump)
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

    async def _pump(self, send: Send) -> None:
        loop = asyncio.get_running_loop()
        fd = self.fd
        pos, end = self.start, self.end
        reading: asyncio.Future[bytes] = loop.run_in_executor(_READERS, os.pread, fd, min(READ_CHUNK, end - pos), pos)
        try:
            while True:
                chunk = await reading
                if not chunk:
                    raise IntegrityError("blob is shorter than recorded", path=self.path)
                pos += len(chunk)
                more = pos < end
                if more:
                    reading = loop.run_in_executor(_READERS, os.pread, fd, min(READ_CHUNK, end - pos), pos)
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    return
        finally:
            if reading.done():
                os.close(fd)
            else:  # cancelled while a read is in flight: close once it is over, never under its feet
                reading.add_done_callback(lambda _: os.close(fd))


def _disposition(filename: str) -> str:
    """``inline`` with an ASCII fallback name and the exact one in UTF-8 (RFC 6266): headers are latin-1 only."""
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    fallback = "".join(c if c.isprintable() else "_" for c in fallback)  # never a control character in a header
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _count_download(request: Request, hub: Hub, repo: Repo, path: str) -> None:
    """One download per request of the repo's query files (``services.download_stats``: the Hub's rule)."""
    counted = download_stats.counts_as_download(
        path,
        repo_type=repo.type,
        library=repo.library_name,
        method=request.method,
        user_agent=request.headers.get("user-agent", ""),
        range_header=request.headers.get("range"),
    )
    if counted:
        download_stats.count_download(hub.db, repo.id)


def _resolve(
    request: Request, hub: Hub, principal: Principal | None, repo_type: str, repo_id: str, skip: int
) -> Response:
    rev, path = rev_and_path(request, skip)
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
        access.check_download(session, principal, repo=repo, path=path)
        commit = resolve_revision(session, repo, rev=rev)
        entry = file_at(session, commit.tree_id, path=path)  # only the folders on its way, not the whole tree
        if entry is not None and request.method == "GET":  # trust: HEAD keeps the metadata, GET refuses flagged files
            gate.check_download(session, hub.settings, repo_id=repo.id, entry=entry)
        xet_hash = xet_meta.xet_hashes(session, hub.settings, repo.id, [entry]).get(path) if entry else None
    if entry is None:
        raise EntryNotFoundError(f"{path} does not exist at revision {rev}", headers={REPO_COMMIT: commit.id})
    etag = entry.sha256 if entry.lfs else entry.git_oid
    headers = {
        REPO_COMMIT: commit.id,
        "ETag": f'"{etag}"',
        LINKED_ETAG: f'"{etag}"',
        LINKED_SIZE: str(entry.size),
        "Content-Disposition": _disposition(path.rsplit("/", 1)[-1]),
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=0",
    }
    if xet_hash is not None:  # hf_xet downloads it from the CAS
        base = str(request.base_url).rstrip("/")
        headers.update(xet_meta.resolve_headers(base, repo_type, repo.repo_id, commit.id, xet_hash))
    _count_download(request, hub, repo, path)
    span = _range(request, entry.size, headers)
    if isinstance(span, Response):
        return span
    status, start, end = span
    local = hub.store.local_path(entry.sha256)
    fd = _open(local) if local is not None else None
    if local is not None and fd is not None:
        return _LocalBlobResponse(local, fd, start, end, status, headers)
    headers["Content-Length"] = str(end - start)  # a remote store streams: say the length up front
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = hub.store.read(entry.sha256, start, end)
    first = next(body, b"")  # a blob missing from the store fails here, before the status is out: a 500, logged
    return StreamingResponse(
        itertools.chain((first,), body), status_code=status, headers=headers, media_type="application/octet-stream"
    )


def _open(path: Path) -> int | None:
    """A descriptor of the blob file, or None if it was just removed (Xet ingestion dropped it: read the xorbs)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _range(request: Request, size: int, headers: dict[str, str]) -> tuple[int, int, int] | Response:
    """(status, start, end) of what to send, honouring a single ``Range`` (and ``If-Range``), with the headers of
    that status added to ``headers``; or the 416 response."""
    start, end, status = 0, size, 200
    spec = request.headers.get("range", "").replace(" ", "")
    if_range = request.headers.get("if-range")
    if spec.startswith("bytes=") and (if_range is None or if_range == headers["ETag"]):
        first, _, last = spec[6:].split(",")[0].partition("-")
        if not (first.isdigit() or (not first and last.isdigit())) or (last and not last.isdigit()):
            raise BadRequestError(f"invalid Range header {spec!r}")
        if first:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
        else:
            start = max(size - int(last), 0)
        if start >= size or start >= end:
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return status, start, end


@router.api_route("/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_model(request: Request, hub: HubDep, principal: PrincipalDep, repo_id: RepoIdDep) -> Response:
    return _resolve(request, hub, principal, "model", repo_id, 3)


@router.api_route("/datasets/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_dataset(request: Request, hub: HubDep, principal: PrincipalDep, repo_id: RepoIdDep) -> Response:
    return _resolve(request, hub, principal, "dataset", repo_id, 4)


@router.api_route("/spaces/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_space(request: Request, hub: HubDep, principal: PrincipalDep, repo_id: RepoIdDep) -> Response:
    return _resolve(request, hub, principal, "space", repo_id, 4)
