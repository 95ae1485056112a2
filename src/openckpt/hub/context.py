"""What every route needs: the hub's parts, the caller, and the repo path parsed from the raw URL."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlencode

from fastapi import Request
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError
from openckpt.hub.db.engine import Database
from openckpt.hub.services.accounts import Principal, authenticate, note_token_use
from openckpt.hub.services.names import split_repo_id
from openckpt.hub.services.web_sessions import authenticate_session
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = [
    "SESSION_COOKIE",
    "Hub",
    "has_credentials",
    "hub_of",
    "int_param",
    "moved_location",
    "next_page",
    "optional_principal",
    "raw_tail",
    "repo_id_of",
    "repo_type_of",
    "require_principal",
    "rev_and_path",
]


SESSION_COOKIE = "openckpt_session"
"""The web UI's cookie: a web session's secret (:mod:`openckpt.hub.services.web_sessions`), never an access token."""


@dataclass
class Hub:
    settings: Settings
    db: Database
    store: BlobStore


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def has_credentials(request: Request, *, session: bool = False) -> bool:
    """Whether :func:`optional_principal` (with the same ``session``) has a token or a web session to look up."""
    if _bearer(request) is not None:
        return True
    return bool(request.cookies.get(SESSION_COOKIE)) and (session or request.method in ("GET", "HEAD"))


def optional_principal(request: Request, *, session: bool = False, db: Session | None = None) -> Principal | None:
    """The caller, or None when anonymous; an invalid token or ended web session is an error, never silently
    anonymous.

    The ``Authorization`` header's token comes first; else the web session's cookie on reads, and on writes with
    ``session=True`` only (web UI forms, which check a CSRF token). ``db`` is the route's own read session, to look
    the token up in (else the lookup opens one).
    """
    if "principal" in request.scope:
        cached: Principal | None = request.scope["principal"]
        return cached
    secret = _bearer(request)
    cookie = request.cookies.get(SESSION_COOKIE) if session or request.method in ("GET", "HEAD") else None
    principal = None
    if secret is not None and db is not None:
        principal = authenticate(db, secret)
    elif secret is not None:
        with hub_of(request).db.read() as db_session:
            principal = authenticate(db_session, secret)
    elif cookie:
        hub = hub_of(request)
        principal = authenticate_session(hub.db, cookie, idle=hub.settings.session_idle)
    if secret is not None and principal is not None and principal.token_id is not None:
        note_token_use(hub_of(request).db, principal.token_id)  # `openckpt token list` shows it
    request.scope["principal"] = principal
    return principal


def require_principal(request: Request) -> Principal:
    from openckpt.errors import UnauthorizedError

    principal = optional_principal(request)
    if principal is None:
        raise UnauthorizedError("This endpoint needs a token: set HF_TOKEN or run `openckpt login`")
    return principal


TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def repo_type_of(plural: str) -> str:
    """``models`` → ``model``; anything else is a 400."""
    try:
        return TYPES[plural]
    except KeyError:
        raise BadRequestError(f"unknown repo type {plural!r}: models, datasets or spaces") from None


def repo_id_of(owner: str, name: str) -> str:
    return "/".join(split_repo_id(f"{owner}/{name}"))


def raw_tail(request: Request, skip: int) -> list[str]:
    """The unquoted segments of the *raw* URL path after its first ``skip`` segments.

    Revisions may contain ``/``; clients send them as ``%2F`` in one segment, which the decoded path would lose.
    """
    raw = request.scope.get("raw_path") or request.url.path.encode()
    parts = raw.decode("latin-1").split("?", 1)[0].strip("/").split("/")
    return [unquote(p) for p in parts[skip:]]


def moved_location(request: Request, old_id: str, new_id: str) -> str | None:
    """This request's URL (path and query, relative: the Hub's redirects of renamed repos are) with the repo
    ``old_id`` renamed ``new_id``; None if its path does not name ``old_id``."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1").split("?", 1)[0]
    parts, old, new = raw.split("/"), old_id.split("/"), new_id.split("/")
    for i in range(len(parts) - 1):
        if parts[i] == old[0] and parts[i + 1] in (old[1], old[1] + ".git"):
            parts[i : i + 2] = [new[0], new[1] + parts[i + 1][len(old[1]) :]]
            query = request.url.query
            return "/".join(parts) + (f"?{query}" if query else "")
    return None


def int_param(request: Request, name: str, default: int) -> int:
    """A non-negative integer query parameter; anything else is a 400 that names it."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise BadRequestError(f"query parameter {name!r} must be a non-negative integer, got {value!r}")
    return int(value)


def next_page(request: Request, offset: int) -> dict[str, str]:
    """The ``Link: <url>; rel="next"`` header of the page at ``offset``: this absolute URL with ``offset`` replaced.

    Built on the raw path: the decoded one would turn a revision's ``%2F`` into a path separator.
    """
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1").split("?", 1)[0]
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"] + [("offset", str(offset))]
    return {"Link": f'<{request.url.scheme}://{request.url.netloc}{raw}?{urlencode(query)}>; rel="next"'}


def rev_and_path(request: Request, skip: int) -> tuple[str, str]:
    """(revision, file path) from the raw segments after ``skip``: the revision is one segment, the path the rest."""
    tail = raw_tail(request, skip)
    if not tail or not tail[0]:
        raise BadRequestError("missing revision")
    return tail[0], "/".join(tail[1:])
