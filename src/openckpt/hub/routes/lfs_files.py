"""The LFS files of a repo's history: list them (``HfApi.list_lfs_files``) and remove them from every commit by
rewriting the history (``HfApi.permanently_delete_lfs_files``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError
from openckpt.hub.bodies import JsonObject, parse_json, read_bounded, validate
from openckpt.hub.context import Hub, int_param, next_page
from openckpt.hub.db.models import Repo
from openckpt.hub.deps import DbDep, EventsDep, HubDep, PrincipalDep, RepoDep, RepoRef, UserDep
from openckpt.hub.services import repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.lfs import purge as lfs_purge
from openckpt.hub.services.webhooks.delivery import Deliveries, repo_event
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
def list_lfs_files(request: Request, db: DbDep, principal: PrincipalDep, repo_ref: RepoDep) -> JSONResponse:
    """Every LFS object of the commits the repo's branches and tags reach, oldest first, paged by ``Link``."""
    offset = int_param(request, "offset", 0)
    page = min(int_param(request, "limit", PAGE) or PAGE, PAGE)
    with db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id)
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


class Deletions(JsonObject):
    sha: list[Any]
    rewrite_history: bool = Field(True, alias="rewriteHistory")


class DeletionsBody(JsonObject):
    """``HfApi.permanently_delete_lfs_files``' body."""

    expected = 'expected a JSON body {"deletions": {"sha": [sha256...], "rewriteHistory": true}}'
    deletions: Deletions


def _deletions(raw: bytes) -> tuple[list[str], bool]:
    """(sha256 list, rewriteHistory) of a ``{"deletions": {"sha": [...], "rewriteHistory": bool}}`` body."""
    try:
        body = validate(DeletionsBody, parse_json(raw))
    except ValueError as e:
        raise BadRequestError(DeletionsBody.expected) from e
    shas, rewrite = body.deletions.sha, body.deletions.rewrite_history
    if len(shas) > BATCH:
        raise BadRequestError(f"at most {BATCH} sha256 per request, got {len(shas)}")
    for sha in shas:
        if not isinstance(sha, str) or not is_sha256(sha):
            raise BadRequestError(f"{sha!r} is not the sha256 of an LFS file (64 lowercase hex digits)")
    return list(dict.fromkeys(shas)), rewrite


def _announce(events: Deliveries | None) -> Callable[[Session, Repo, lfs_purge.Purge], None]:
    """For ``lfs_purge.purge``: the moved refs' ``repo.content`` event, in the rewrite's own transaction."""

    def on_purged(session: Session, repo: Repo, done: lfs_purge.Purge) -> None:
        if events is not None and done.moved:
            head = next((m.new for m in done.moved if m.ref == f"refs/heads/{repo.default_branch}"), None)
            events.enqueue(
                session, repo_event(repo, "update", scope="repo.content", head_sha=head, updated_refs=done.moved)
            )

    return on_purged


def _purge(
    hub: Hub, principal: Principal, repo_ref: RepoRef, raw: bytes, events: Deliveries | None
) -> tuple[Repo, lfs_purge.Purge]:
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id, write=True)
    shas, rewrite = _deletions(raw)  # after the access check: a 403 or 404 comes before any 400
    if not rewrite:
        raise BadRequestError(NO_POINTERS_KEPT)
    if not shas:
        return repo, lfs_purge.Purge((), 0)
    done = lfs_purge.purge(hub.db, repo.id, shas=shas, on_purged=_announce(events))
    if done.moved:
        repos.refresh_metadata(hub.db, hub.store, repo_id=repo.id)  # card, tags and lineage of the new head
    return repo, done


@router.post("/api/{plural}/{owner}/{name}/lfs-files/batch")
async def delete_lfs_files(
    request: Request, hub: HubDep, principal: UserDep, repo_ref: RepoDep, events: EventsDep
) -> dict[str, Any]:
    """Remove LFS files from every commit of the repo: the commits holding them and their descendants get new ids."""
    raw = await read_bounded(request, hub.settings.max_json_bytes)
    _, done = await run_in_threadpool(_purge, hub, principal, repo_ref, raw, events)
    if events is not None and done.moved:
        events.wake()
    return {
        "rewrittenCommits": done.rewritten,
        "updatedRefs": [{"ref": m.ref, "oldSha": m.old, "newSha": m.new} for m in done.moved],
    }
