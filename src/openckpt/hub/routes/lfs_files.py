"""The LFS files of a repo's history: list them (``HfApi.list_lfs_files``) and remove them from every commit by
rewriting the history (``HfApi.permanently_delete_lfs_files``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError
from openckpt.hub.bodies import parse_json, read_bounded
from openckpt.hub.context import (
    Hub,
    hub_of,
    int_param,
    next_page,
    optional_principal,
    repo_id_of,
    repo_type_of,
    require_principal,
)
from openckpt.hub.db.models import Repo
from openckpt.hub.routes.webhooks import notify
from openckpt.hub.services import lfs_purge, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.webhook_delivery import repo_event
from openckpt.hub.views import iso
from openckpt.store.blobs import is_sha256

router = APIRouter()
PAGE = 1000
BATCH = 1000
"""The most sha256 one removal takes (the client sends batches of 1000)."""
NO_POINTERS_KEPT = (
    "this hub removes LFS files by rewriting history (rewriteHistory: true): its storage is shared by content, so "
    "it cannot delete a file's bytes while commits still point at them"
)


@router.get("/api/{plural}/{owner}/{name}/lfs-files")
def list_lfs_files(request: Request, plural: str, owner: str, name: str) -> JSONResponse:
    """Every LFS object of the commits the repo's branches and tags reach, oldest first, paged by ``Link``."""
    offset = int_param(request, "offset", 0)
    page = min(int_param(request, "limit", PAGE) or PAGE, PAGE)
    with hub_of(request).db.read() as session:
        repo = repos.find_repo(
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        files = lfs_purge.lfs_files(session, repo)
    shown = [_file_json(f) for f in files[offset : offset + page]]
    more = len(files) > offset + page
    return JSONResponse(shown, headers=next_page(request, offset + page) if more else None)


def _file_json(f: lfs_purge.LfsFile) -> dict[str, Any]:
    # ``fileOid`` names the file's content for a removal; ``oid`` is its Git LFS object id: both are its sha256 here
    return {
        "fileOid": f.sha256,
        "oid": f.sha256,
        "filename": f.path,
        "size": f.size,
        "pushedAt": iso(f.pushed_at),
        "ref": f.ref,
    }


def _deletions(raw: bytes) -> tuple[list[str], bool]:
    """(sha256 list, rewriteHistory) of a ``{"deletions": {"sha": [...], "rewriteHistory": bool}}`` body."""
    try:
        body = parse_json(raw)
    except ValueError as e:
        raise BadRequestError('expected a JSON body {"deletions": {"sha": [sha256...], "rewriteHistory": true}}') from e
    deletions = body.get("deletions") if isinstance(body, dict) else None
    shas = deletions.get("sha") if isinstance(deletions, dict) else None
    rewrite = deletions.get("rewriteHistory", True) if isinstance(deletions, dict) else None
    if not isinstance(shas, list) or not isinstance(rewrite, bool):
        raise BadRequestError('expected a JSON body {"deletions": {"sha": [sha256...], "rewriteHistory": true}}')
    if len(shas) > BATCH:
        raise BadRequestError(f"at most {BATCH} sha256 per request, got {len(shas)}")
    for sha in shas:
        if not isinstance(sha, str) or not is_sha256(sha):
            raise BadRequestError(f"{sha!r} is not the sha256 of an LFS file (64 lowercase hex digits)")
    return list(dict.fromkeys(shas)), rewrite


def _purge(hub: Hub, principal: Principal, repo_type: str, repo_id: str, raw: bytes) -> tuple[Repo, lfs_purge.Purge]:
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type, repo_id, write=True)
    shas, rewrite = _deletions(raw)
    if not rewrite:
        raise BadRequestError(NO_POINTERS_KEPT)
    if not shas:
        return repo, lfs_purge.Purge((), 0)
    done = lfs_purge.purge(hub.db, repo.id, shas)
    if done.moved:
        repos.refresh_metadata(hub.db, hub.store, repo.id)  # card, tags and lineage of the new head
    return repo, done


@router.post("/api/{plural}/{owner}/{name}/lfs-files/batch")
async def delete_lfs_files(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    """Remove LFS files from every commit of the repo: the commits holding them and their descendants get new ids."""
    principal = require_principal(request)
    raw = await read_bounded(request, hub_of(request).settings.max_json_bytes)
    hub = hub_of(request)
    repo_type, repo_id = repo_type_of(plural), repo_id_of(owner, name)
    repo, done = await run_in_threadpool(_purge, hub, principal, repo_type, repo_id, raw)
    if done.moved:
        head = next((m.new for m in done.moved if m.ref == f"refs/heads/{repos.DEFAULT_BRANCH}"), None)
        notify(request, repo_event(repo, "update", "repo.content", head_sha=head, updated_refs=done.moved))
    return {
        "rewrittenCommits": done.rewritten,
        "updatedRefs": [{"ref": m.ref, "oldSha": m.old, "newSha": m.new} for m in done.moved],
    }
