"""FastAPI dependencies of the routes: the hub's parts, the caller, the repo a path names, and JSON bodies as models.

Each is an ``Annotated`` type to put in a route's signature; FastAPI resolves them in the order they are declared, so
declare them in the order their errors should win (the caller before the repo before the body, as the routes always
checked). Lookups that touch the database run in a worker thread, and only when the request carries a credential.

    @router.post("/api/{plural}/{owner}/{name}/like")
    async def like(hub: HubDep, user: UserDep, repo: RepoDep) -> dict[str, Any]: ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from openckpt.errors import UnauthorizedError
from openckpt.hub.bodies import read_model
from openckpt.hub.context import (
    Hub,
    has_credentials,
    hub_of,
    optional_principal,
    repo_id_of,
    repo_type_of,
    require_principal,
)
from openckpt.hub.db.engine import Database
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.webhooks.delivery import Deliveries
from openckpt.hub.settings import Settings

__all__ = [
    "DbDep",
    "EventsDep",
    "HubDep",
    "PrincipalDep",
    "RepoDep",
    "RepoIdDep",
    "RepoRef",
    "RepoTypeDep",
    "SettingsDep",
    "UserDep",
    "ViewerDep",
    "json_body",
    "principal",
    "user",
    "viewer",
    "viewer_of",
]

M = TypeVar("M", bound=BaseModel)


async def _hub(request: Request) -> Hub:
    return hub_of(request)


async def _db(request: Request) -> Database:
    return hub_of(request).db


async def _settings(request: Request) -> Settings:
    return hub_of(request).settings


HubDep = Annotated[Hub, Depends(_hub)]
"""The hub's settings, database and store."""
DbDep = Annotated[Database, Depends(_db)]
"""The hub's database."""
SettingsDep = Annotated[Settings, Depends(_settings)]
"""The hub's settings."""


async def _events(request: Request) -> Deliveries | None:
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    return deliveries


EventsDep = Annotated[Deliveries | None, Depends(_events)]
"""The webhook deliveries a change writes its events to, in its own transaction (None when the hub sends none)."""


async def principal(request: Request) -> Principal | None:
    """The caller, or None when anonymous; an invalid token is a 401 (:func:`openckpt.hub.context.optional_principal`,
    whose answer is kept for the request)."""
    if "principal" in request.scope or not has_credentials(request):
        return optional_principal(request)  # known already, or anonymous: no lookup
    return await run_in_threadpool(optional_principal, request)


async def user(request: Request) -> Principal:
    """The caller, who must be signed in: a 401 otherwise (:func:`openckpt.hub.context.require_principal`)."""
    await principal(request)  # looked up once, in a worker thread if need be
    return require_principal(request)


def viewer_of(request: Request) -> Principal | None:
    """The signed-in account of a web page, or None; a revoked or unknown session token counts as signed out (and is
    cleared by the page)."""
    try:
        return optional_principal(request, session=True)
    except UnauthorizedError:
        request.scope["principal"] = None
        request.state.stale_session = True
        return None


async def viewer(request: Request) -> Principal | None:
    """:func:`viewer_of` as a dependency, looked up in a worker thread if need be."""
    if "principal" in request.scope or not has_credentials(request, session=True):
        return viewer_of(request)
    return await run_in_threadpool(viewer_of, request)


PrincipalDep = Annotated[Principal | None, Depends(principal)]
"""The caller, or None when anonymous (an invalid token is a 401, never anonymous)."""
UserDep = Annotated[Principal, Depends(user)]
"""The caller, signed in by a token: a 401 otherwise."""
ViewerDep = Annotated[Principal | None, Depends(viewer)]
"""The signed-in account of a web page (its session cookie, on forms too), or None: an ended session is signed out."""


@dataclass(frozen=True, slots=True)
class RepoRef:
    """A repo as a URL names it: its type (``model``, ``dataset``, ``space``) and id (``owner/name``)."""

    type: str
    id: str


async def _repo_type(plural: str) -> str:
    return repo_type_of(plural)


async def _repo_id(owner: str, name: str) -> str:
    return repo_id_of(owner, name)


async def _repo(plural: str, owner: str, name: str) -> RepoRef:
    return RepoRef(repo_type_of(plural), repo_id_of(owner, name))


RepoTypeDep = Annotated[str, Depends(_repo_type)]
"""The repo type of the path's ``{plural}`` (``models`` → ``model``): a 400 for anything else."""
RepoIdDep = Annotated[str, Depends(_repo_id)]
"""The repo id of the path's ``{owner}/{name}``, validated: a 400 for an invalid name."""
RepoDep = Annotated[RepoRef, Depends(_repo)]
"""The repo of the path's ``/{plural}/{owner}/{name}``: a 400 for an unknown type or an invalid name."""


def json_body(model: type[M], *, optional: bool = False) -> Callable[[Request], Awaitable[M]]:
    """A dependency reading the JSON body through :mod:`openckpt.hub.bodies` (bounded in size and depth) as ``model``:
    ``Annotated[Model, Depends(json_body(Model))]``. An empty body is ``{}`` if ``optional``; a body that does not fit
    is a 400 (:func:`openckpt.hub.bodies.read_model`)."""

    async def read(request: Request) -> M:
        return await read_model(request, model, optional=optional)

    read.__name__ = f"json_body_{model.__name__}"
    return read
