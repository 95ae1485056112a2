"""Trust on the web UI: scan badges, summary and detected imports, the signature panel, releases, signing keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, ForbiddenError
from openckpt.hub.context import Hub, hub_of
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Commit, Repo
from openckpt.hub.deps import DbDep, HubDep, RepoIdDep
from openckpt.hub.routes.security import release_file
from openckpt.hub.routes.ui.common import PageRoute, csrf_token, page, signed_in_form, viewer_of
from openckpt.hub.services import gate, signatures
from openckpt.hub.services.repos import DEFAULT_BRANCH
from openckpt.hub.services.trees import FileEntry

__all__ = ["router", "trust_context"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

_LABELS = {"needs_code": "needing code", "opaque": "opaque data", "unscanned": "not scanned yet"}
"""How the scan summary names files of a verdict (``2 needing code``)."""


def trust_context(
    session: Session, request: Request, repo: Repo, commit: Commit, entries: dict[str, FileEntry]
) -> dict[str, Any]:
    """What the repo page shows: each file's scan status, a summary, the signature, and the release form."""
    hub = hub_of(request)
    files = gate.statuses(session, hub.settings, repo_id=repo.id, entries=entries.values())
    counts: dict[str, int] = {}
    for status in files.values():
        counts[status.level] = counts.get(status.level, 0) + 1
    others = sorted((k, v) for k, v in counts.items() if k != "clean")
    summary = "all files clean" if not others else ", ".join(f"{n} {_LABELS.get(k, k)}" for k, n in others)
    viewer = viewer_of(request)
    scratch = hub.settings.data_dir / "tmp"
    return {
        "files": files,
        "summary": summary,
        "clean": all(s.runs_nothing for s in files.values()),
        "flagged": [s for s in files.values() if s.withheld],
        "loads": [s for s in files.values() if s.imports and not s.withheld],
        "signature": signatures.check_signature(
            session, hub.store, repo=repo, entries=entries, tree_id=commit.tree_id, scratch=scratch
        ),
        "can_release": gate.may_release(viewer, repo),
        "csrf": csrf_token(request, "release") if viewer is not None else "",
    }


async def _release(request: Request, hub: Hub, repo_type: str, repo_id: str) -> Response:
    viewer, form = await signed_in_form(request, "release")
    path, rev = str(form.get("path") or ""), str(form.get("rev") or DEFAULT_BRANCH)
    if not path:
        raise BadRequestError("no file to release")
    await run_in_threadpool(release_file, hub, viewer, repo_type, repo_id, path, rev)
    prefix = "/datasets/" if repo_type == "dataset" else "/"
    return RedirectResponse(f"{prefix}{repo_id}", status_code=303)


@router.post("/datasets/{owner}/{name}/scan/release")
async def release_dataset(request: Request, hub: HubDep, repo_id: RepoIdDep) -> Response:
    return await _release(request, hub, "dataset", repo_id)


@router.post("/{owner}/{name}/scan/release")
async def release_model(request: Request, hub: HubDep, repo_id: RepoIdDep) -> Response:
    return await _release(request, hub, "model", repo_id)


def _keys_page(request: Request, db: Database, *, error: str = "", status: int = 200) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return RedirectResponse("/login?next=/settings/keys", status_code=303)
    with db.read() as session:
        keys = signatures.list_keys(session, viewer.account_id)
    context = {"keys": keys, "csrf": csrf_token(request, "keys"), "error": error}
    return page(request, "keys.html", context, status=status, headers={"Cache-Control": "no-store"})


@router.get("/settings/keys")
def keys(request: Request, db: DbDep) -> Response:
    return _keys_page(request, db)


@router.post("/settings/keys")
async def manage_keys(request: Request, db: DbDep) -> Response:
    """``action=add`` (name, public_key PEM) or ``action=remove`` (name)."""
    viewer, form = await signed_in_form(request, "keys")
    if not viewer.can_write:
        raise ForbiddenError("this session uses a read token: sign in with a write token to change signing keys")
    action, name = form.get("action"), str(form.get("name") or "").strip()
    pem = str(form.get("public_key") or "")
    if action == "add":
        try:
            signatures.parse_public_key(pem)
        except BadRequestError as e:
            return _keys_page(request, db, error=str(e), status=400)
        if not name or len(name) > 100:
            return _keys_page(request, db, error="Give the key a name of 1 to 100 characters.", status=400)
    elif action != "remove":
        raise BadRequestError("action must be 'add' or 'remove'")
    if action == "add":
        signatures.add_own_key(db, viewer, name=name, pem=pem)
    else:
        signatures.remove_own_key(db, viewer, name=name)
    return RedirectResponse("/settings/keys", status_code=303)
