"""The mirror over HTTP: :class:`MirrorReads` fills the cache before the read routes run, the admin API
(``/api/admin/mirror``: list, add or refresh, evict) that ``openckpt mirror`` calls, and each user's own upstream
token (``/api/settings/upstream-token``: set, ask whether set, forget).

:class:`MirrorReads` is an ASGI middleware, so that the read routes (``model_info``, tree, paths-info, commits,
``/resolve``, the Xet read token) stay as they are: for each such request naming a repo and revision it calls
``mirror.ensure`` in a worker thread, then hands the request on; a failure of the upstream is answered in the Hub's
error shape.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from openckpt.errors import ForbiddenError, HubError, RepoNotFoundError
from openckpt.hub.bodies import JsonObject
from openckpt.hub.context import hub_of, optional_principal
from openckpt.hub.deps import HubDep, UserDep, json_body
from openckpt.hub.error_response import error_response
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.mirror import cache as mirror
from openckpt.hub.services.mirror import tokens as mirror_tokens
from openckpt.hub.services.mirror.cache import MirrorState
from openckpt.hub.services.sealed import sealing_key

__all__ = ["MirrorReads", "read_target", "router"]

router = APIRouter()
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
API_READS = ("revision", "tree", "paths-info", "commits", "refs", "xet-read-token")


def read_target(method: str, raw_path: str) -> tuple[str, str, str] | None:
    """(repo type, repo id, revision) of a read the mirror may answer, else None."""
    parts = raw_path.split("?", 1)[0].split("/")[1:]
    if method not in ("GET", "HEAD") and not (method == "POST" and len(parts) > 5 and parts[4] == "paths-info"):
        return None
    if len(parts) >= 4 and parts[0] == "api" and parts[1] in TYPES:
        repo_type, repo_id = TYPES[parts[1]], f"{unquote(parts[2])}/{unquote(parts[3])}"
        if len(parts) == 4:
            return repo_type, repo_id, "main"
        if parts[4] in API_READS:
            revision = unquote(parts[5]) if len(parts) > 5 and parts[5] and parts[4] != "refs" else "main"
            return repo_type, repo_id, revision
        return None
    prefix = 1 if parts and parts[0] in ("datasets", "spaces") else 0
    if len(parts) >= prefix + 5 and parts[prefix + 2] == "resolve" and parts[prefix + 3]:
        repo_type = TYPES[parts[0]] if prefix else "model"
        return repo_type, f"{unquote(parts[prefix])}/{unquote(parts[prefix + 1])}", unquote(parts[prefix + 3])
    return None


class MirrorReads:
    """ASGI middleware: before a read of a repo (:func:`read_target`), fetch it from the upstream if need be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            target = read_target(scope["method"], raw)
            if target is not None:
                try:
                    await anyio.to_thread.run_sync(self._ensure, Request(scope), target)
                except HubError as e:
                    await error_response(e.status, e.code, str(e), e.headers)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    def _ensure(request: Request, target: tuple[str, str, str]) -> None:
        hub = hub_of(request)
        principal = optional_principal(request)  # kept for the route: looked up once
        caller = None
        if principal is not None:
            key = sealing_key(hub.settings.secret)
            caller = mirror.Caller(principal.account_id, mirror_tokens.token_of(hub.db, key, principal.account_id))
        mirror.ensure(hub, *target, caller=caller)


# ---- admin API ------------------------------------------------------------------------------------------------


class MirrorAdd(JsonObject):
    expected = "expected JSON {repo_id, repo_type?, revision?}"
    repo_id: str
    repo_type: str = "model"
    revision: str = "main"


def _admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise ForbiddenError("only an admin of this hub manages its mirror")


def _state_json(state: MirrorState) -> dict[str, Any]:
    return {"revision": state.revision, "commit": state.commit_id, "upstream": state.upstream, "checked": state.checked}


@router.get("/api/admin/mirror")
def mirror_list(hub: HubDep, principal: UserDep) -> list[dict[str, Any]]:
    _admin(principal)
    with hub.db.read() as session:
        found = mirror.listing(session)
    return [{"type": t, "id": i, "revisions": [_state_json(s) for s in states]} for t, i, states in found]


@router.post("/api/admin/mirror")
def mirror_add(
    hub: HubDep, principal: UserDep, body: Annotated[MirrorAdd, Depends(json_body(MirrorAdd))]
) -> dict[str, Any]:
    """Fetch (or check again) a revision of an upstream repo now."""
    _admin(principal)
    state = mirror.refresh(hub, body.repo_type, body.repo_id, body.revision)
    if state is None:
        raise RepoNotFoundError(f"no upstream has {body.repo_type} {body.repo_id}@{body.revision}, or it is local")
    return {"type": body.repo_type, "id": body.repo_id, **_state_json(state)}


@router.delete("/api/admin/mirror/{plural}/{owner}/{name}")
def mirror_evict(hub: HubDep, principal: UserDep, plural: str, owner: str, name: str) -> dict[str, Any]:
    _admin(principal)
    if plural not in TYPES or not mirror.evict(hub, TYPES[plural], f"{owner}/{name}"):
        raise RepoNotFoundError(f"{plural} {owner}/{name} is not a mirrored repo")
    return {"evicted": f"{owner}/{name}"}


# ---- each user's own upstream token -----------------------------------------------------------------------------


class UpstreamToken(JsonObject):
    expected = "expected JSON {token}"
    token: str


@router.get("/api/settings/upstream-token")
def upstream_token_status(hub: HubDep, principal: UserDep) -> dict[str, Any]:
    """Whether the caller has set an upstream token (never the token)."""
    key = sealing_key(hub.settings.secret)
    return {"set": mirror_tokens.token_of(hub.db, key, principal.account_id) is not None}


@router.put("/api/settings/upstream-token")
def upstream_token_set(
    hub: HubDep, principal: UserDep, body: Annotated[UpstreamToken, Depends(json_body(UpstreamToken))]
) -> dict[str, Any]:
    """Keep the caller's own token for the upstreams (sealed): used for their reads of gated and private repos."""
    mirror_tokens.set_token(hub.db, sealing_key(hub.settings.secret), principal.account_id, body.token)
    return {"set": True}


@router.delete("/api/settings/upstream-token")
def upstream_token_forget(hub: HubDep, principal: UserDep) -> dict[str, Any]:
    mirror_tokens.forget(hub.db, principal.account_id)
    return {"set": False}
