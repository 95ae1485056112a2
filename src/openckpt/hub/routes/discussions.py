"""Discussions and pull requests: ``/api/{plural}/{owner}/{name}/discussions[/{num}[/...]]``, as ``huggingface_hub``
calls them (``get_repo_discussions`` … ``merge_pull_request``). Registered before the repos routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError
from openckpt.hub.bodies import read_json
from openckpt.hub.context import Hub, hub_of, int_param, optional_principal, repo_id_of, repo_type_of
from openckpt.hub.db.models import Discussion, DiscussionEvent, Repo
from openckpt.hub.routes.files import _notify_commit as notify_commit
from openckpt.hub.services import discussions, pull_requests, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.webhook_delivery import Deliveries, repo_event

__all__ = ["router"]

router = APIRouter()
BASE = "/api/{plural}/{owner}/{name}/discussions"


@router.get(BASE)
def list_discussions(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    q = request.query_params
    hub = hub_of(request)
    with hub.db.read() as session:
        principal = optional_principal(request, db=session)
        repo = repos.find_repo(session, principal, repo_type_of(plural), repo_id_of(owner, name))
        found = discussions.list_discussions(
            session,
            repo,
            page=int_param(request, "p", 0),
            kind=q.get("type"),
            status=q.get("status"),
            author=q.get("author"),
        )
    return {"discussions": found.discussions, "count": found.count, "start": found.start}


@router.get(BASE + "/{num}")
def discussion_details(request: Request, plural: str, owner: str, name: str, num: int) -> dict[str, Any]:
    hub = hub_of(request)
    with hub.db.read() as session:
        principal = optional_principal(request, db=session)
        repo, d = discussions.find_discussion(session, principal, repo_type_of(plural), repo_id_of(owner, name), num)
        events = list(
            session.query(DiscussionEvent)
            .filter_by(discussion_id=d.id)
            .order_by(DiscussionEvent.created_at, DiscussionEvent.id)
        )
        return discussions.discussion_json(d, repo, events=events)


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request, optional=True)
    if not isinstance(body, dict):
        raise BadRequestError("expected a JSON object")
    return body


def _announce(request: Request, session: Session, d: Discussion, event: DiscussionEvent | None, action: str) -> None:
    """Write the webhook deliveries of a change of ``d`` in its own transaction (``session``'s)."""
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    if deliveries is None:
        return
    repo = session.get(Repo, d.repo_id)
    assert repo is not None
    scope = "discussion.comment" if event is not None and event.type == "comment" else "discussion"
    extra = discussions.webhook_fields(d, repo, event, base_url=str(request.base_url).rstrip("/"))
    deliveries.enqueue(session, repo_event(repo, action, scope, extra=extra))


def _wake(request: Request) -> None:
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    if deliveries is not None:
        deliveries.wake()


def _write(request: Request, change: Callable[..., DiscussionEvent], *args: Any) -> dict[str, Any]:
    with hub_of(request).db.write() as session:
        event = change(session, *args)
        d = session.get(Discussion, event.discussion_id)
        assert d is not None
        created = event.type == "comment" and event.edits == 0 and not event.hidden
        _announce(request, session, d, event, "create" if created else "update")
        out = discussions.event_json(event)
    _wake(request)
    return out


def _open(request: Request, principal: Principal | None, repo_type: str, repo_id: str, body: dict[str, Any]) -> int:
    with hub_of(request).db.write() as session:
        _, d = discussions.open_discussion(
            session,
            principal,
            repo_type,
            repo_id,
            title=body.get("title"),
            description=body.get("description") or "",
            pull_request=bool(body.get("pullRequest")),
        )
        _announce(request, session, d, None, "create")
        num = d.num
    _wake(request)
    return num


@router.post(BASE)
async def create_discussion(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    body = await _body(request)
    principal = optional_principal(request)
    args = (request, principal, repo_type_of(plural), repo_id_of(owner, name), body)
    num = await run_in_threadpool(_open, *args)
    return {"num": num}


def _where(request: Request, plural: str, owner: str, name: str, num: int) -> tuple[Any, ...]:
    return optional_principal(request), repo_type_of(plural), repo_id_of(owner, name), num


@router.post(BASE + "/{num}/comment")
async def comment(request: Request, plural: str, owner: str, name: str, num: int) -> dict[str, Any]:
    body, where = await _body(request), _where(request, plural, owner, name, num)
    event = await run_in_threadpool(_write, request, discussions.comment, *where, body.get("comment"))
    return {"newMessage": event}


@router.post(BASE + "/{num}/comment/{comment_id}/edit")
async def edit_comment(
    request: Request, plural: str, owner: str, name: str, num: int, comment_id: str
) -> dict[str, Any]:
    body, where = await _body(request), _where(request, plural, owner, name, num)
    event = await run_in_threadpool(_write, request, discussions.edit_comment, *where, comment_id, body.get("content"))
    return {"updatedComment": event}


@router.post(BASE + "/{num}/comment/{comment_id}/hide")
async def hide_comment(
    request: Request, plural: str, owner: str, name: str, num: int, comment_id: str
) -> dict[str, Any]:
    where = _where(request, plural, owner, name, num)
    event = await run_in_threadpool(_write, request, discussions.hide_comment, *where, comment_id)
    return {"updatedComment": event}


@router.post(BASE + "/{num}/title")
async def rename(request: Request, plural: str, owner: str, name: str, num: int) -> dict[str, Any]:
    body, where = await _body(request), _where(request, plural, owner, name, num)
    event = await run_in_threadpool(_write, request, discussions.rename, *where, body.get("title"))
    return {"newTitle": event}


@router.post(BASE + "/{num}/status")
async def change_status(request: Request, plural: str, owner: str, name: str, num: int) -> dict[str, Any]:
    body, where = await _body(request), _where(request, plural, owner, name, num)
    event = await run_in_threadpool(
        _write, request, discussions.change_status, *where, body.get("status"), body.get("comment")
    )
    return {"newStatus": event}


def _merge(
    hub: Hub, principal: Principal | None, repo_type: str, repo_id: str, num: int, comment: Any
) -> tuple[Repo, str, str, str]:
    done = pull_requests.merge(
        hub.db,
        hub.store,
        hub.settings,
        principal,
        repo_type,
        repo_id,
        num,
        comment=comment if isinstance(comment, str) else None,
    )
    if done[1] == repos.DEFAULT_BRANCH:
        repos.refresh_metadata(hub.db, hub.store, done[0].id)
    return done


def _announce_merge(request: Request, repo_pk: int, num: int) -> None:
    with hub_of(request).db.write() as session:
        d = session.query(Discussion).filter_by(repo_id=repo_pk, num=num).one()
        _announce(request, session, d, None, "update")
    _wake(request)


@router.post(BASE + "/{num}/merge")
async def merge(request: Request, plural: str, owner: str, name: str, num: int) -> dict[str, Any]:
    body = await _body(request)
    principal, repo_type, repo_id = optional_principal(request), repo_type_of(plural), repo_id_of(owner, name)
    args = (hub_of(request), principal, repo_type, repo_id, num, body.get("comment"))
    repo, branch, old, new = await run_in_threadpool(_merge, *args)
    if old != new:
        notify_commit(request, repo, branch, old, new)
    await run_in_threadpool(_announce_merge, request, repo.id, num)
    return {}
