"""Web sign-in with an access token (it starts a web session: the cookie never holds the token), sign-out, and token
management (``/settings/tokens``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from openckpt.errors import BadRequestError, ForbiddenError, UnauthorizedError
from openckpt.hub.db.engine import Database
from openckpt.hub.deps import DbDep, HubDep, ViewerDep
from openckpt.hub.routes.ui.common import (
    SESSION_COOKIE,
    PageRoute,
    check_csrf,
    csrf_token,
    page,
    signed_in_form,
    start_session,
)
from openckpt.hub.services import accounts, pages, web_sessions
from openckpt.hub.services.accounts import Principal

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never ``//host`` or ``/\\host``, which browsers treat as another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or not target.isprintable():
        return "/"
    return target


@router.get("/login")
def login_form(request: Request, viewer: ViewerDep) -> Response:
    if viewer is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request, request.query_params.get("next"), "", 200)


def _login_page(request: Request, target: str | None, error: str, status: int) -> Response:
    context = {"next": _safe_next(target), "error": error, "csrf": csrf_token(request, "login")}
    return page(request, "login.html", context, status=status, headers={"Cache-Control": "no-store"})


@router.post("/login")
async def login(request: Request, hub: HubDep) -> Response:
    form = await request.form()
    check_csrf(request, form.get("csrf"), "login")
    secret = str(form.get("token") or "").strip()
    try:
        if not secret:
            raise UnauthorizedError("empty token")
        cookie = web_sessions.sign_in(
            hub.db, secret, replacing=request.cookies.get(SESSION_COOKIE), lifetime=hub.settings.session_lifetime
        )
    except UnauthorizedError:
        return _login_page(
            request, str(form.get("next") or ""), "That token is not valid: it is unknown or has been revoked.", 401
        )
    return start_session(request, RedirectResponse(_safe_next(str(form.get("next") or "/")), status_code=303), cookie)


@router.post("/logout")
async def logout(request: Request, db: DbDep) -> Response:
    form = await request.form()
    check_csrf(request, form.get("csrf"), "logout")
    if cookie := request.cookies.get(SESSION_COOKIE):
        web_sessions.sign_out(db, cookie)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _tokens_page(
    request: Request,
    db: Database,
    viewer: Principal | None,
    *,
    new_secret: str = "",
    new_name: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    if viewer is None:
        return RedirectResponse("/login?next=/settings/tokens", status_code=303)
    with db.read() as session:
        tokens = pages.list_tokens(session, viewer.account_id)
    context = {
        "tokens": tokens,
        "current_token": viewer.token_id,
        "csrf": csrf_token(request, "tokens"),
        "new_secret": new_secret,
        "new_name": new_name,
        "error": error,
    }
    return page(request, "tokens.html", context, status=status, headers={"Cache-Control": "no-store"})


@router.get("/settings/tokens")
def tokens(request: Request, db: DbDep, viewer: ViewerDep) -> Response:
    return _tokens_page(request, db, viewer)


@router.post("/settings/tokens")
async def manage_tokens(request: Request, hub: HubDep) -> Response:
    """``action=create`` (name, role) or ``action=revoke`` (id). A new token's secret is shown on this response only."""
    viewer, form = await signed_in_form(request, "tokens")
    action = form.get("action")
    if action == "create":
        name = str(form.get("name") or "").strip()
        role = str(form.get("role") or "read")
        if not name or len(name) > 100:
            return _tokens_page(
                request, hub.db, viewer, error="Give the token a name of 1 to 100 characters.", status=400
            )
        secret = accounts.create_own_token(hub.db, viewer, name=name, role=role)
        return _tokens_page(request, hub.db, viewer, new_secret=secret, new_name=name)
    if action == "revoke":
        if not viewer.can_write:
            raise ForbiddenError("this session uses a read token: sign in with a write token to revoke tokens")
        try:
            token_id = int(str(form.get("id")))
        except ValueError:
            raise BadRequestError("no token id") from None
        accounts.revoke_own_token(hub.db, viewer, token_id=token_id)  # and the web sessions it signed in
        if token_id == viewer.token_id:
            response = RedirectResponse("/", status_code=303)  # this session's own token: signed out
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        return RedirectResponse("/settings/tokens", status_code=303)
    raise BadRequestError("action must be 'create' or 'revoke'")
