"""``/resolve``: file downloads with the headers the Hub client needs, and Range requests."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import update

from openckpt.errors import EntryNotFoundError
from openckpt.hub.context import hub_of, optional_principal, repo_id_of, rev_and_path
from openckpt.hub.db.models import Repo
from openckpt.hub.services import repos
from openckpt.hub.services.commits import resolve_revision, tree_entries
from openckpt.protocol import LINKED_ETAG, LINKED_SIZE, REPO_COMMIT

router = APIRouter()


class _BlobFileResponse(FileResponse):
    chunk_size = 4 << 20  # large reads: the default 64 KiB costs half the throughput


def _disposition(filename: str) -> str:
    """``inline`` with an ASCII fallback name and the exact one in UTF-8 (RFC 6266): headers are latin-1 only."""
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _count_download(request: Request, repo_id: int, path: str, has_config: bool) -> None:
    """One download per GET of config.json (models) or of any file's first byte (repos without one)."""
    if request.method != "GET" or request.headers.get("range", "bytes=0-").split("=")[-1].split("-")[0] not in (
        "",
        "0",
    ):
        return
    if path == "config.json" or not has_config:
        with hub_of(request).db.write() as session:
            session.execute(update(Repo).where(Repo.id == repo_id).values(downloads=Repo.downloads + 1))


def _resolve(request: Request, repo_type: str, owner: str, name: str, skip: int) -> Response:
    hub = hub_of(request)
    rev, path = rev_and_path(request, skip)
    with hub.db.read() as session:
        repo = repos.find_repo(session, optional_principal(request), repo_type, repo_id_of(owner, name))
        commit = resolve_revision(session, repo, rev)
        entries = tree_entries(session, commit.tree_id)
    entry = entries.get(path)
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
    _count_download(request, repo.id, path, "config.json" in entries)
    local = hub.store.local_path(entry.sha256)
    if local is not None:
        return _BlobFileResponse(local, headers=headers, media_type="application/octet-stream")
    return _stream(request, entry.sha256, entry.size, headers)


def _stream(request: Request, sha256: str, size: int, headers: dict[str, str]) -> Response:
    """Serve from a backend without local files, honouring a single Range."""
    start, end = 0, size
    status = 200
    spec = request.headers.get("range")
    if spec and spec.startswith("bytes="):
        first, _, last = spec[6:].split(",")[0].partition("-")
        start = int(first) if first else max(size - int(last), 0)
        end = min(int(last) + 1, size) if first and last else size
        if start >= size:
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        status = 206
        headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{size}"}
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = hub_of(request).store.read(sha256, start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")


@router.api_route("/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_model(request: Request, owner: str, name: str, rest: str) -> Response:
    return _resolve(request, "model", owner, name, 3)


@router.api_route("/datasets/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_dataset(request: Request, owner: str, name: str, rest: str) -> Response:
    return _resolve(request, "dataset", owner, name, 4)


@router.api_route("/spaces/{owner}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
def resolve_space(request: Request, owner: str, name: str, rest: str) -> Response:
    return _resolve(request, "space", owner, name, 4)
