"""People pages: sign-up (``/join``, as ``OPENCKPT_SIGNUP`` allows), account settings (``/settings``: profile, and
links to tokens and signing keys), an admin's users, organisations and invite links (``/admin/users``), and an
organisation admin's members page (``/organizations/{name}/members``). Every form carries a CSRF token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from openckpt.errors import AccountNotFoundError, BadRequestError, ConflictError, ForbiddenError
from openckpt.hub.context import Hub, hub_of
from openckpt.hub.db.models import Account
from openckpt.hub.deps import DbDep, HubDep, ViewerDep
from openckpt.hub.routes.ui.common import (
    ENV,
    PageRoute,
    check_csrf,
    csrf_token,
    page,
    signed_in_form,
    start_session,
    viewer_of,
)
from openckpt.hub.services import accounts, pages, people, people_admin

router = APIRouter(route_class=PageRoute, include_in_schema=False)

NO_STORE = {"Cache-Control": "no-store"}


def _signup_mode(request: Request) -> str:
    return hub_of(request).settings.signup


ENV.globals["signup_mode"] = _signup_mode  # the header links to /join unless sign-up is closed


# ---- sign-up ----------------------------------------------------------------------------------------------------


def _join_page(
    request: Request,
    hub: Hub,
    *,
    error: str = "",
    status: int = 200,
    values: dict[str, str] | None = None,
    new_secret: str = "",
) -> Response:
    mode = hub.settings.signup
    invite = request.query_params.get("invite") or (values or {}).get("invite", "")
    invited = ""
    if mode == "invite" and invite and not new_secret:
        try:
            invited = people_admin.check_invite(hub.settings.secret, invite)
        except ForbiddenError as e:
            error, status = str(e), 403
    context = {
        "mode": mode,
        "invite": invite,
        "invited": invited,
        "error": error,
        "values": values or {},
        "new_secret": new_secret,
        "csrf": csrf_token(request, "join"),
    }
    return page(request, "join.html", context, status=status, headers=NO_STORE)


@router.get("/join")
def join_form(request: Request, hub: HubDep) -> Response:
    return _join_page(request, hub)


@router.post("/join")
async def join(request: Request, hub: HubDep) -> Response:
    """Create the account and a write token, sign the browser in, and show the token once."""
    form = await request.form()
    check_csrf(request, form.get("csrf"), "join")
    values = {k: str(form.get(k) or "").strip() for k in ("name", "fullname", "invite")}
    if hub.settings.signup == "closed":
        raise ForbiddenError("sign-up is closed on this hub: ask an admin for an account")
    name = values["name"]
    if hub.settings.signup == "invite":
        name = people_admin.check_invite(hub.settings.secret, values["invite"])
    try:
        secret, cookie = people_admin.sign_up(
            hub.db, name, fullname=values["fullname"], lifetime=hub.settings.session_lifetime
        )
    except BadRequestError as e:
        return _join_page(request, hub, error=str(e), status=400, values=values)
    except ConflictError as e:  # a taken name
        return _join_page(request, hub, error=str(e), status=409, values=values)
    return start_session(request, _join_page(request, hub, new_secret=secret, values={**values, "name": name}), cookie)


# ---- account settings -------------------------------------------------------------------------------------------


@router.get("/settings")
def account_settings(request: Request, db: DbDep, viewer: ViewerDep) -> Response:
    if viewer is None:
        return RedirectResponse("/login?next=/settings", status_code=303)
    account, orgs = people.own_account(db, viewer)
    context = {
        "account": account,
        "orgs": orgs,
        "csrf": csrf_token(request, "profile"),
        "saved": request.query_params.get("saved"),
    }
    return page(request, "settings.html", context)


@router.post("/settings")
async def save_profile(request: Request, db: DbDep) -> Response:
    viewer, form = await signed_in_form(request, "profile")
    accounts.set_fullname(db, viewer, fullname=str(form.get("fullname") or ""))
    return RedirectResponse("/settings?saved=1", status_code=303)


# ---- admin: users, organisations, invites -----------------------------------------------------------------------


def _admin(request: Request) -> None:
    viewer = viewer_of(request)
    if viewer is None or not viewer.is_admin:
        raise AccountNotFoundError("no such page")


def _users_page(
    request: Request, hub: Hub, *, notice: dict[str, str] | None = None, error: str = "", status: int = 200
) -> Response:
    _admin(request)
    with hub.db.read() as session:
        users = pages.search_accounts(session, "", limit=1000)
        active = {t.account_id for t in accounts.list_tokens(session)}
        context: dict[str, Any] = {
            "users": [u for u in users if u.kind == "user"],
            "orgs": [o for o in users if o.kind == "org"],
            "active": active,
            "csrf": csrf_token(request, "admin-users"),
            "notice": notice or {},
            "error": error,
            "signup": hub.settings.signup,
            "base": str(request.base_url).rstrip("/"),
        }
    return page(request, "admin_users.html", context, status=status, headers=NO_STORE)


@router.get("/admin/users")
def admin_users(request: Request, hub: HubDep) -> Response:
    return _users_page(request, hub)


@router.post("/admin/users")
async def admin_users_action(request: Request, hub: HubDep) -> Response:
    """``create`` (name, admin), ``disable`` / ``reset`` (name), ``invite`` (name), ``org`` (name, admin)."""
    viewer, form = await signed_in_form(request, "admin-users")
    _admin(request)
    if not viewer.can_write:
        raise ForbiddenError("this session uses a read token: sign in with a write token to manage users")
    action, name = str(form.get("action") or ""), str(form.get("name") or "").strip()
    try:
        if action == "create":
            secret = people_admin.add_user(hub.db, name, is_admin=form.get("admin") == "on")
            notice = {"title": f"User {name} created", "secret": secret}
        elif action == "disable":
            count = people_admin.disable_user(hub.db, name)
            notice = {"title": f"{name} is disabled: {count} token{'s' if count != 1 else ''} revoked"}
        elif action == "reset":
            notice = {
                "title": f"New token for {name} (the old ones are revoked)",
                "secret": people_admin.reset_user(hub.db, name),
            }
        elif action == "invite":
            code = people_admin.make_invite(hub.db, name, secret=hub.settings.secret)
            notice = {
                "title": f"Invite link for {name} (valid 7 days, once)",
                "link": f"{hub.settings.public_url}/join?invite={code}",
            }
        elif action == "org":
            people_admin.create_org(hub.db, name, admin=str(form.get("admin_user") or viewer.name).strip())
            notice = {"title": f"Organisation {name} created"}
        else:
            raise BadRequestError("unknown action")
    except BadRequestError as e:
        return _users_page(request, hub, error=str(e), status=400)
    except ConflictError as e:
        return _users_page(request, hub, error=str(e), status=409)
    return _users_page(request, hub, notice=notice)


# ---- organisation members ---------------------------------------------------------------------------------------


def _org_admin(request: Request, org: Account) -> bool:
    viewer = viewer_of(request)
    return viewer is not None and (viewer.is_admin or viewer.orgs.get(org.id) == "admin")


@router.get("/organizations/{name}/members")
def org_members(request: Request, db: DbDep, name: str) -> Response:
    with db.read() as session:
        org = accounts.find_account(session, name, kind="org")
        members = pages.members(session, org)
    manage = _org_admin(request, org)
    context = {
        "org": org,
        "members": members,
        "manage": manage,
        "csrf": csrf_token(request, "org-members") if manage else "",
    }
    return page(request, "org_members.html", context)


@router.post("/organizations/{name}/members")
async def org_members_action(request: Request, db: DbDep, name: str) -> Response:
    """``set`` (user, role) adds a member or changes its role; ``remove`` (user) takes it out."""
    viewer, form = await signed_in_form(request, "org-members")
    with db.read() as session:
        org = accounts.find_account(session, name, kind="org")
    if not _org_admin(request, org) or not viewer.can_write:
        raise ForbiddenError(f"only an admin of {name}, signed in with a write token, manages its members")
    user, action = str(form.get("user") or "").strip(), form.get("action")
    if action == "set":
        people_admin.set_member(db, name, user=user, role=str(form.get("role") or "read"))
    elif action == "remove":
        people_admin.remove_member(db, name, user=user)
    else:
        raise BadRequestError("unknown action")
    return RedirectResponse(f"/organizations/{name}/members", status_code=303)
