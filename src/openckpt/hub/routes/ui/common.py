"""What every web page shares: templates and their filters, the viewer from the session cookie, CSRF tokens,
security headers, and HTML error pages for the hub's errors.

Sessions are the ``openckpt_session`` cookie (HttpOnly, SameSite=Lax, Secure over https) holding a web session's
secret (``services.web_sessions``), not an access token. A form that changes state carries
``csrf`` = HMAC(hub secret, purpose ‖ sha256(session secret)), or, before login, HMAC over a random
``openckpt_csrf`` cookie; the server recomputes it and also refuses cross-site ``Origin``/``Sec-Fetch-Site``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from openckpt.errors import (
    BadRequestError,
    EntryNotFoundError,
    ForbiddenError,
    HubError,
    RepoMovedError,
    RepoNotFoundError,
    RevisionNotFoundError,
    UnauthorizedError,
)
from openckpt.hub.context import SESSION_COOKIE, hub_of, moved_location
from openckpt.hub.db.models import Repo, utcnow
from openckpt.hub.deps import viewer_of
from openckpt.hub.error_boundary import answer_of
from openckpt.hub.services.accounts import Principal, hash_token
from openckpt.protocol import REPO_TYPE_PREFIX

__all__ = [
    "SESSION_COOKIE",
    "start_session",
    "PageRoute",
    "check_csrf",
    "page_number",
    "csrf_token",
    "page",
    "repo_url",
    "resolve_url",
    "signed_in_form",
    "viewer_of",
]

log = logging.getLogger("openckpt.hub")

LEGACY_COOKIE = "openckpt_token"
"""Where older hubs kept the signed-in browser's access token itself: cleared wherever it is still sent."""
NONCE_COOKIE = "openckpt_csrf"
HUB_DIR = Path(__file__).resolve().parents[2]
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' https: data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
}


# ---- formatting -------------------------------------------------------------------------------------------------


def human_size(n: int) -> str:
    """Decimal units as the Hub shows them: ``0 B``, ``1.2 kB``, ``3.4 MB``."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 999.95:
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{value:.0f} PB"


def human_count(n: int | None) -> str:
    """``950``, ``12.3k``, ``124M``, ``7.2B``."""
    if n is None:
        return "-"
    for limit, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= limit:
            value = n / limit
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(n)


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(int((utcnow() - moment).total_seconds()), 0)
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def utc(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def repo_url(repo: Repo) -> str:
    """``/owner/name`` for a model, ``/datasets/owner/name`` for a dataset."""
    return f"/{REPO_TYPE_PREFIX[repo.type]}{repo.repo_id}"


def resolve_url(repo: Repo, rev: str, path: str) -> str:
    """The download URL of a file (the API's ``/resolve``)."""
    return f"{repo_url(repo)}/resolve/{quote(rev, safe='')}/{quote(path)}"


def _metadata_value(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return f"{type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    return str(value)


def _static_version() -> str:
    h = hashlib.sha256()
    for path in sorted((HUB_DIR / "static").glob("*")):
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


ENV = Environment(
    loader=FileSystemLoader(HUB_DIR / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    size=human_size,
    count=human_count,
    ago=ago,
    utc=utc,
    q=lambda s: quote(str(s), safe=""),
    qpath=lambda s: quote(str(s)),
    short=lambda sha: str(sha)[:7],
    metadata_value=_metadata_value,
    thousands=lambda n: f"{n:,}",
)
ENV.globals.update(repo_url=repo_url, resolve_url=resolve_url, static_version=_static_version())


# ---- the viewer and CSRF ----------------------------------------------------------------------------------------


def _binding(request: Request, *, create: bool) -> str | None:
    """What a form's CSRF token is bound to: the session token's digest, else the pre-login nonce cookie."""
    viewer_of(request)  # marks a stale session, which no longer counts
    session = request.cookies.get(SESSION_COOKIE)
    if session and not getattr(request.state, "stale_session", False):
        return "session:" + hash_token(session)
    nonce = request.cookies.get(NONCE_COOKIE) or getattr(request.state, "new_nonce", None)
    if nonce is None and create:
        nonce = request.state.new_nonce = secrets.token_urlsafe(24)
    return None if nonce is None else "nonce:" + nonce


def _mac(request: Request, purpose: str, binding: str) -> str:
    secret = hub_of(request).settings.secret
    return hmac.new(secret, f"{purpose}\0{binding}".encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request, purpose: str) -> str:
    """The hidden ``csrf`` field of a form that ``purpose`` names (``logout``, ``tokens``, ``login``)."""
    binding = _binding(request, create=True)
    assert binding is not None
    return _mac(request, purpose, binding)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_csrf(request: Request, form_value: object, purpose: str) -> None:
    """Refuse a state-changing form from another site, or without the token this session's page carried."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise ForbiddenError("cross-site form submissions are refused")
    origin = request.headers.get("origin")
    if origin is not None and origin not in (
        _origin(str(request.base_url)),
        _origin(hub_of(request).settings.public_url),
    ):
        raise ForbiddenError(f"form posted from another origin ({origin}) is refused")
    binding = _binding(request, create=False)
    expected = _mac(request, purpose, binding) if binding else ""
    if not expected or not isinstance(form_value, str) or not hmac.compare_digest(form_value, expected):
        raise ForbiddenError("the form's CSRF token is missing or stale: reload the page and try again")


async def signed_in_form(request: Request, purpose: str) -> tuple[Principal, FormData]:
    """The signed-in viewer and the form it posted, its CSRF token checked for ``purpose``; signed out is a 401."""
    form = await request.form()
    viewer = viewer_of(request)
    if viewer is None:
        raise UnauthorizedError("sign in first")
    check_csrf(request, form.get("csrf"), purpose)
    return viewer, form


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https" or hub_of(request).settings.public_url.startswith("https://")


def start_session(request: Request, response: Response, cookie: str) -> Response:
    """``response`` carrying the cookie of the web session ``cookie`` just started (HTTP-only, for the session's
    whole lifetime)."""
    lifetime = hub_of(request).settings.session_lifetime
    secure = secure_cookies(request)
    response.set_cookie(
        SESSION_COOKIE, cookie, max_age=lifetime, httponly=True, samesite="lax", secure=secure, path="/"
    )
    return response


# ---- pages ------------------------------------------------------------------------------------------------------


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` for this request, with the viewer, its logout form token and safe headers."""
    viewer = viewer_of(request)
    html = ENV.get_template(template).render(
        request=request,
        viewer=viewer,
        logout_csrf=csrf_token(request, "logout") if viewer else "",
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
    if getattr(request.state, "stale_session", False):
        response.delete_cookie(SESSION_COOKIE, path="/")
    if LEGACY_COOKIE in request.cookies:
        response.delete_cookie(LEGACY_COOKIE, path="/")
    nonce = getattr(request.state, "new_nonce", None)
    if nonce is not None:
        response.set_cookie(
            NONCE_COOKIE, nonce, httponly=True, samesite="lax", secure=secure_cookies(request), path="/"
        )
    return response


_TITLES: dict[type[HubError], str] = {
    RevisionNotFoundError: "Revision not found",
    EntryNotFoundError: "File or folder not found",
}


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    return page(request, "error.html", {"status": status, "title": title, "detail": detail}, status=status)


class PageRoute(APIRoute):
    """A route whose hub errors (404 for hidden repos, 400, 403...) become HTML pages, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RepoMovedError as e:  # an old name of a repo: its pages moved with it
                location = moved_location(request, e.old_id, e.new_id) if request.method == "GET" else None
                if location is not None:
                    return RedirectResponse(location, 307)
                return error_page(request, 404, "Not found", str(e))
            except RepoNotFoundError:  # one page for "absent" and "private": the API's rule
                return error_page(request, 404, "Not found", "No such page, or it is private.")
            except HubError as e:
                return error_page(request, e.status, _TITLES.get(type(e), "Request refused"), str(e))
            except HTTPException:
                raise
            except Exception as e:  # the status of the hub's error table; a server fault is logged, its id shown
                status, _ = answer_of(type(e))
                if status < 500:
                    return error_page(request, status, "Request refused", str(e))
                request_id = getattr(request.state, "request_id", "-")
                log.exception("request %s failed: %s %s", request_id, request.method, request.url.path)
                message = f"Something failed on the hub's side; its log has it under request id {request_id}."
                return error_page(request, status, "Server error", message)

        return handle


def page_number(value: str | None) -> int:
    """The page a ``?p=`` asks for, from 1; a :class:`BadRequestError` if it is not a number."""
    if not value:
        return 1
    if not value.isdigit():
        raise BadRequestError(f"invalid page number {value!r}")
    return max(int(value), 1)
