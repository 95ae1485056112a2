"""Trust over HTTP: releasing files the scanner flagged, and the caller's model-signing keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import EntryNotFoundError, ForbiddenError
from openckpt.hub.bodies import JsonObject
from openckpt.hub.context import Hub
from openckpt.hub.deps import DbDep, HubDep, RepoDep, UserDep, json_body
from openckpt.hub.services import gate, signatures
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.repos import DEFAULT_BRANCH, find_repo
from openckpt.hub.services.trees import FileEntry, file_at
from openckpt.hub.settings import Settings
from openckpt.hub.views import file_security_json

__all__ = ["add_file_security", "release_file", "router"]

router = APIRouter()


class ReleaseBody(JsonObject):
    expected = "expected JSON {path, revision?}"
    path: str
    revision: str | None = None


class SigningKeyBody(JsonObject):
    expected = "expected JSON {name, publicKey (PEM)}"
    name: str
    public_key: str = Field(alias="publicKey")


def release_file(hub: Hub, principal: Principal, repo_type: str, repo_id: str, path: str, rev: str) -> None:
    """Release ``path`` at ``rev`` (its current bytes) of a repo the caller owns or administers."""
    with hub.db.read() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
        commit = resolve_revision(session, repo, rev=rev)
        entry = file_at(session, commit.tree_id, path=path)
    if entry is None:
        raise EntryNotFoundError(f"{path} does not exist at revision {rev}")
    gate.release(hub.db, principal, repo=repo, entry=entry)


@router.post("/api/{plural}/{owner}/{name}/scan/release")
async def release(
    hub: HubDep, principal: UserDep, body: Annotated[ReleaseBody, Depends(json_body(ReleaseBody))], repo: RepoDep
) -> dict[str, Any]:
    """JSON ``{path, revision?}``: let downloads of a flagged file through (owner or hub admin)."""
    rev = body.revision or DEFAULT_BRANCH
    await run_in_threadpool(release_file, hub, principal, repo.type, repo.id, body.path, rev)
    return {"path": body.path, "released": True}


def _key_json(key: Any) -> dict[str, Any]:
    return {"name": key.name, "hint": key.hint, "publicKey": key.public_key, "createdAt": key.created_at.isoformat()}


@router.get("/api/settings/signing-keys")
def list_signing_keys(db: DbDep, principal: UserDep) -> list[dict[str, Any]]:
    with db.read() as session:
        return [_key_json(k) for k in signatures.list_keys(session, principal.account_id)]


@router.post("/api/settings/signing-keys")
async def add_signing_key(
    db: DbDep, principal: UserDep, body: Annotated[SigningKeyBody, Depends(json_body(SigningKeyBody))]
) -> dict[str, Any]:
    """JSON ``{name, publicKey}`` (PEM): a key the caller's signed repos verify against."""
    if not principal.can_write:
        raise ForbiddenError("a read token cannot register signing keys")

    key = await run_in_threadpool(signatures.add_own_key, db, principal, name=body.name, pem=body.public_key)
    return _key_json(key)


@router.delete("/api/settings/signing-keys/{key_name}")
def remove_signing_key(db: DbDep, principal: UserDep, key_name: str) -> Response:
    if not principal.can_write:
        raise ForbiddenError("a read token cannot remove signing keys")
    signatures.remove_own_key(db, principal, name=key_name)
    return Response(status_code=200)


def add_file_security(
    session: Session, settings: Settings, repo_id: int, entries: Mapping[str, FileEntry], items: list[dict[str, Any]]
) -> None:
    """Add ``securityFileStatus`` to the file items of an expanded tree or paths-info answer."""
    files = [entries[i["path"]] for i in items if i.get("type") == "file" and i["path"] in entries]
    found = gate.statuses(session, settings, repo_id=repo_id, entries=files)
    for item in items:
        if (status := found.get(item["path"])) is not None and item.get("type") == "file":
            item["securityFileStatus"] = file_security_json(status)
