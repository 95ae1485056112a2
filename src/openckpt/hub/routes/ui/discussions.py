"""The community tab of a repo in the web UI: discussions and pull requests, server-rendered, without JavaScript.

``/{repo}/discussions`` lists them (``?status=open|closed|all``, ``?type=discussion|pull_request``) with a form to
open a discussion; ``/{repo}/discussions/{num}`` shows a thread's events (comments as Markdown through the cards'
sanitiser, status and title changes, commits) with a comment form and, for writers, close, reopen, hide and merge;
``/{repo}/discussions/{num}/files`` shows what a pull request changes since it opened (text diffs, and tensor diffs
of safetensors files). Every form posts to ``/{repo}/discussions[/{num}]`` with a CSRF token, and calls what the API
calls (:mod:`openckpt.hub.routes.discussions`: the same services, with the webhooks in the change's transaction).
Included before ``ui_changes`` and ``ui_repo``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError, DiscussionNotFoundError
from openckpt.hub.context import hub_of, repo_id_of
from openckpt.hub.db.models import Discussion, DiscussionEvent, Repo
from openckpt.hub.routes.discussions import merge_pull_request, open_thread, write_event
from openckpt.hub.routes.ui.common import PageRoute, csrf_token, page, page_number, repo_url, signed_in_form, viewer_of
from openckpt.hub.routes.ui.repo import _header, _repo
from openckpt.hub.services import access, diffs, pull_requests
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.community import discussions
from openckpt.hub.services.render import render_markdown
from openckpt.hub.services.repos import DEFAULT_BRANCH

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PURPOSE = "discussions"
PAGE = 25
STATUSES = {"open": ("open", "draft"), "closed": ("closed", "merged"), "all": ()}
KINDS = {"discussion": False, "pull_request": True, "all": None}


def _num(request: Request) -> int:
    num = request.path_params["num"]
    if not num.isdigit():
        raise DiscussionNotFoundError(f"no discussion {num!r}")
    return int(num)


def _where(request: Request, repo_type: str) -> tuple[str, str]:
    return repo_type, repo_id_of(request.path_params["owner"], request.path_params["name"])


def _repo_header(session: Session, repo: Repo, tab: str) -> dict[str, Any]:
    """The repo header at the default branch (the community tab has no revision of its own)."""
    base = repo_url(repo)
    head = resolve_revision(session, repo, rev=DEFAULT_BRANCH)
    return _header(session, repo, DEFAULT_BRANCH, head, tab, lambda r: f"{base}?rev={quote(r, safe='')}")


def _forms(request: Request, session: Session, repo: Repo, d: Discussion | None = None) -> dict[str, Any]:
    """What the viewer may do here: take part (comment, open), moderate (writers), and act as the author."""
    viewer = viewer_of(request)
    part = discussions.may_take_part(session, viewer, repo=repo)
    moderate = viewer is not None and part and discussions.may_moderate(viewer, repo)
    author = viewer is not None and d is not None and viewer.name == d.author
    return {
        "can_take_part": part,
        "can_moderate": moderate,
        "can_close": part and (moderate or author),
        "csrf": csrf_token(request, PURPOSE) if part else "",
    }


# ---- pages ------------------------------------------------------------------------------------------------------


def listing(request: Request, repo_type: str) -> Response:
    """The discussions and pull requests of a repo, newest first, filtered by status and kind, paged."""
    status = request.query_params.get("status") or "open"
    kind = request.query_params.get("type") or "all"
    if status not in STATUSES or kind not in KINDS:
        raise BadRequestError("status is open, closed or all; type is discussion, pull_request or all")
    number = page_number(request.query_params.get("p"))
    with hub_of(request).db.read() as session:
        repo = _repo(session, request, repo_type)
        rows, count = discussions.threads(
            session, repo, statuses=STATUSES[status], pull_requests=KINDS[kind], offset=(number - 1) * PAGE, limit=PAGE
        )
        context = {
            **_repo_header(session, repo, "community"),
            **_forms(request, session, repo),
            "rows": rows,
            "count": count,
            "status": status,
            "kind": kind,
            "number": number,
            "more": number * PAGE < count,
        }
        return page(request, "repo_discussions.html", context)


def _event_view(event: DiscussionEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event}
    if event.type == "comment" and not event.hidden:
        out["html"] = render_markdown(event.content)
    return out


def thread(request: Request, repo_type: str) -> Response:
    """A discussion or pull request: its events, oldest first, and the forms the viewer may use."""
    num = _num(request)
    with hub_of(request).db.read() as session:
        repo_type, repo_id = _where(request, repo_type)
        repo, d = discussions.find_discussion(
            session, viewer_of(request), repo_type=repo_type, repo_id=repo_id, num=num
        )
        sides = pull_requests.sides(session, repo, d=d)
        context = {
            **_repo_header(session, repo, "community"),
            **_forms(request, session, repo, d),
            "d": d,
            "events": [_event_view(e) for e in discussions.events_of(session, d)],
            "head": sides[1] if sides else None,
            "view": "conversation",
        }
        return page(request, "repo_discussion.html", context)


def files(request: Request, repo_type: str) -> Response:
    """What a pull request changes, from the commit it started at to its head: text and tensor diffs."""
    num = _num(request)
    hub = hub_of(request)
    with hub.db.read() as session:
        repo_type, repo_id = _where(request, repo_type)
        viewer = viewer_of(request)
        repo, d = discussions.find_discussion(session, viewer, repo_type=repo_type, repo_id=repo_id, num=num)
        sides = pull_requests.sides(session, repo, d=d)
        if sides is None:
            raise DiscussionNotFoundError(f"#{num} is a discussion, not a pull request: it changes no files")
        may_read = access.has_access(session, viewer, repo=repo)
        changes = diffs.tree_diffs(session, hub.store, base=sides[0].tree_id, tree=sides[1].tree_id) if may_read else []
        context = {
            **_repo_header(session, repo, "community"),
            **_forms(request, session, repo, d),
            "d": d,
            "head": sides[1],
            "diffs": changes,
            "blob_rev": sides[1].id,
            "gated_out": not may_read,
            "view": "files",
        }
        return page(request, "repo_pr_files.html", context)


# ---- forms ------------------------------------------------------------------------------------------------------


async def new_discussion(request: Request, repo_type: str) -> Response:
    """Open a discussion from the list page's form; to the new thread."""
    viewer, form = await signed_in_form(request, PURPOSE)
    body = {"title": str(form.get("title") or ""), "description": str(form.get("description") or "")}
    repo_type, repo_id = _where(request, repo_type)
    num = await run_in_threadpool(open_thread, request, viewer, repo_type, repo_id, body)
    return RedirectResponse(f"{request.url.path}/{num}", status_code=303)


async def act(request: Request, repo_type: str) -> Response:
    """A thread's forms: ``action`` = comment, close, reopen, hide (``comment_id``), rename (``title``), merge."""
    num = _num(request)
    viewer, form = await signed_in_form(request, PURPOSE)
    where = (viewer, *_where(request, repo_type), num)
    action, text = form.get("action"), str(form.get("comment") or "")
    anchor = ""
    if action == "comment":
        event = await run_in_threadpool(write_event, request, discussions.comment, *where, text)
        anchor = f"#{event['id']}"
    elif action in ("close", "reopen"):
        status = "closed" if action == "close" else "open"
        await run_in_threadpool(write_event, request, discussions.change_status, *where, status, text)
    elif action == "hide":
        comment_id = str(form.get("comment_id") or "")
        await run_in_threadpool(write_event, request, discussions.hide_comment, *where, comment_id)
    elif action == "rename":
        await run_in_threadpool(write_event, request, discussions.rename, *where, form.get("title"))
    elif action == "merge":
        await run_in_threadpool(merge_pull_request, request, *where, text or None)
    else:
        raise BadRequestError(f"unknown action {action!r}")
    return RedirectResponse(f"{request.url.path}{anchor}", status_code=303)


def _page(view: Callable[[Request, str], Response], repo_type: str) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        return view(request, repo_type)

    endpoint.__name__ = f"{view.__name__}_{repo_type}"
    return endpoint


def _form(
    view: Callable[[Request, str], Awaitable[Response]], repo_type: str
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await view(request, repo_type)

    endpoint.__name__ = f"{view.__name__}_{repo_type}"
    return endpoint


for _prefix, _type in (("/datasets", "dataset"), ("", "model")):  # datasets first: their paths are longer
    _base = f"{_prefix}/{{owner}}/{{name}}/discussions"
    router.add_api_route(_base, _page(listing, _type), methods=["GET"])
    router.add_api_route(_base, _form(new_discussion, _type), methods=["POST"])
    router.add_api_route(_base + "/{num}", _page(thread, _type), methods=["GET"])
    router.add_api_route(_base + "/{num}", _form(act, _type), methods=["POST"])
    router.add_api_route(_base + "/{num}/files", _page(files, _type), methods=["GET"])
