"""The mirror over HTTP: :class:`MirrorReads` fills the cache before the read routes run, the admin API
(``/api/admin/mirror``: list, add or refresh, evict) that ``openckpt mirror`` calls, and each user's own upstream
token (``/api/settings/upstream-token``: set, ask whether set, forget).

:class:`MirrorReads` is an ASGI middleware, so that the read routes (``model_info``, tree, paths-info, commits,
``/resolve``, the Xet read token) stay as they are: for each such request naming a repo and revision it calls
``mirror.ensure`` in a worker thread, then hands the request on; a failure of the upstream is answered in the Hub's
error shape. A cold ``/resolve`` of a file that may stream before its revision's verdict is answered by the
middleware itself, from the background fetch as the file arrives (``services/mirror/live.py``), with the headers the
read route gives once the file is cached. A web page of a repo being fetched waits a moment, then says so.
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, unquote

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from openckpt.errors import BadRequestError, ForbiddenError, HubError, RepoNotFoundError
from openckpt.hub.bodies import JsonObject
from openckpt.hub.context import hub_of, optional_principal
from openckpt.hub.deps import HubDep, UserDep, json_body
from openckpt.hub.error_response import error_response
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.mirror import cache as mirror
from openckpt.hub.services.mirror import tokens as mirror_tokens
from openckpt.hub.services.mirror.cache import MirrorState
from openckpt.hub.services.mirror.live import Follower
from openckpt.hub.services.names import RESERVED_ACCOUNT_NAMES, check_name
from openckpt.hub.services.sealed import sealing_key
from openckpt.protocol import LINKED_ETAG, LINKED_SIZE, REPO_COMMIT

__all__ = ["MirrorReads", "page_target", "read_target", "resolved_path", "router"]

router = APIRouter()
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
API_READS = ("revision", "tree", "paths-info", "commits", "refs", "xet-read-token")
LIVE_CHUNK = 4 << 20
PAGE_WAIT = 2.0
"""Seconds a repo page waits for the fetch of its repo before saying that it is being fetched."""
PAGE_VIEWS = ("tree", "blob", "commits")


def resolved_path(raw_path: str) -> str | None:
    """The file a ``/resolve`` URL names (a read :func:`read_target` answers), else None."""
    parts = raw_path.split("?", 1)[0].split("/")[1:]
    prefix = 1 if parts and parts[0] in ("datasets", "spaces") else 0
    if len(parts) >= prefix + 5 and parts[prefix + 2] == "resolve":
        return "/".join(unquote(p) for p in parts[prefix + 4 :])
    return None


def page_target(method: str, raw_path: str) -> tuple[str, str, str] | None:
    """(repo type, repo id, revision) of a web page of a repo (overview, folders, files, history), else None."""
    path, _, query = raw_path.partition("?")
    parts = path.rstrip("/").split("/")[1:]
    repo_type = "dataset" if parts and parts[0] == "datasets" else "model"
    parts = parts[1:] if repo_type == "dataset" else parts
    if method != "GET" or len(parts) < 2 or parts[0].lower() in RESERVED_ACCOUNT_NAMES:
        return None
    owner, name = unquote(parts[0]), unquote(parts[1])
    try:
        check_name(owner), check_name(name)
    except BadRequestError:
        return None
    repo_id = f"{owner}/{name}"
    if len(parts) == 2:
        revision = parse_qs(query).get("rev", ["main"])[0]
        return repo_type, repo_id, revision or "main"
    if len(parts) >= 4 and parts[2] in PAGE_VIEWS:
        return repo_type, repo_id, unquote(parts[3])
    return None


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
    """ASGI middleware: before a read of a repo (:func:`read_target`), fetch it from the upstream if need be; a cold
    ``/resolve`` of a file that may stream before the verdict streams from the fetch (``services/mirror/live.py``),
    and a repo page of a repo being fetched says so (:func:`page_target`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        target, page = read_target(scope["method"], raw), page_target(scope["method"], raw)
        try:
            if target is not None:
                path = resolved_path(raw)
                request = Request(scope)
                if path is not None and "range" not in request.headers:
                    follower = await anyio.to_thread.run_sync(self._follow, request, target, path)
                    if follower is not None:
                        await stream_live(scope, receive, send, follower)
                        return
                await anyio.to_thread.run_sync(self._ensure, request, target)
            elif page is not None and not await anyio.to_thread.run_sync(self._page_ready, Request(scope), page):
                await fetching_page(*page)(scope, receive, send)
                return
        except HubError as e:
            await error_response(e.status, e.code, str(e), e.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _caller(request: Request) -> mirror.Caller | None:
        hub = hub_of(request)
        principal = optional_principal(request)  # kept for the route: looked up once
        if principal is None:
            return None
        key = sealing_key(hub.settings.secret)
        return mirror.Caller(principal.account_id, mirror_tokens.token_of(hub.db, key, principal.account_id))

    @classmethod
    def _ensure(cls, request: Request, target: tuple[str, str, str]) -> None:
        mirror.ensure(hub_of(request), *target, caller=cls._caller(request))

    @classmethod
    def _follow(cls, request: Request, target: tuple[str, str, str], path: str) -> Follower | None:
        """The file to stream from the background fetch of ``target``, if it may; None: read as usual."""
        caller = cls._caller(request)
        if caller is not None and caller.token:  # reads with a user's own upstream token wait for the verdict
            return None
        job = mirror.background(hub_of(request), *target)
        return job.wait_for(path) if job is not None else None

    @classmethod
    def _page_ready(cls, request: Request, page: tuple[str, str, str]) -> bool:
        """Whether the repo page can be shown now: False while the repo is being fetched (after :data:`PAGE_WAIT`)."""
        caller = cls._caller(request)
        if caller is not None and caller.token:
            mirror.ensure(hub_of(request), *page, caller=caller)
            return True
        job = mirror.background(hub_of(request), *page)
        return job is None or job.wait_done(PAGE_WAIT)


async def stream_live(scope: Scope, receive: Receive, send: Send, follower: Follower) -> None:
    """Answer a ``/resolve`` of the file ``follower`` follows from its fetch, with the headers the read route will
    give once it is cached; the connection is cut if the fetch fails (``services/mirror/live.py``: the held tail never
    leaves then)."""
    live = follower.live
    headers = {
        REPO_COMMIT: live.commit,
        "etag": f'"{live.sha256}"',
        LINKED_ETAG: f'"{live.sha256}"',
        LINKED_SIZE: str(live.size),
        "content-length": str(live.size),
        "content-type": "application/octet-stream",
        "content-disposition": _disposition(live.path.rsplit("/", 1)[-1]),
        "accept-ranges": "bytes",
        "cache-control": "private, max-age=0",
    }
    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    try:
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with anyio.create_task_group() as group:

            async def pump() -> None:
                while follower.pos < live.size:
                    limit = await anyio.to_thread.run_sync(follower.readable)
                    while follower.pos < limit:
                        piece = follower.take(limit)  # as received, while among the newest bytes
                        if piece is None:  # it joined late or fell behind: from the file
                            piece = await anyio.to_thread.run_sync(follower.read_file, limit, LIVE_CHUNK)
                        await send({"type": "http.response.body", "body": piece, "more_body": follower.pos < live.size})
                group.cancel_scope.cancel()

            group.start_soon(pump)
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()
    finally:
        follower.close()


def _disposition(filename: str) -> str:
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def fetching_page(repo_type: str, repo_id: str, revision: str) -> HTMLResponse:
    """The page of a repo still being fetched from the upstream: it reloads itself until the repo is here."""
    name = html.escape(repo_id)
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{name}: being fetched</title></head><body><main><h1>{name}</h1>"
        f"<p>This {html.escape(repo_type)} is being fetched from the upstream hub at {html.escape(revision)}, "
        "scanned and checked against this hub's policy. This page reloads when it is here.</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=202, headers={"retry-after": "2", "cache-control": "no-store"})


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
