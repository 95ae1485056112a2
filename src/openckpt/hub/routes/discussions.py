"""Discussions and pull requests: ``/api/{plural}/{owner}/{name}/discussions[/{num}[/...]]``, as ``huggingface_hub``
calls them (``get_repo_discussions`` … ``merge_pull_request``). Registered before the repos routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from openckpt.hub.bodies import JsonObject
from openckpt.hub.context import hub_of, int_param
from openckpt.hub.db.models import DiscussionEvent, Repo
from openckpt.hub.deps import DbDep, PrincipalDep, RepoDep, json_body
from openckpt.hub.routes.webhooks import pr_merged, wake
from openckpt.hub.services import pull_requests, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.community import discussions, threads

__all__ = ["merge_pull_request", "open_thread", "router", "write_event"]

router = APIRouter()
BASE = "/api/{plural}/{owner}/{name}/discussions"


@router.get(BASE)
def list_discussions(request: Request, db: DbDep, principal: PrincipalDep, repo_ref: RepoDep) -> dict[str, Any]:
    q = request.query_params
    with db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id)
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
def discussion_details(db: DbDep, principal: PrincipalDep, repo_ref: RepoDep, num: int) -> dict[str, Any]:
    return threads.details(db, principal, repo_type=repo_ref.type, repo_id=repo_ref.id, num=num)


class ThreadBody(JsonObject):
    """What the client sends to the discussion routes (each reads its own keys; the services check the values)."""

    title: Any = None
    description: Any = None
    pull_request: Any = Field(None, alias="pullRequest")
    comment: Any = None
    content: Any = None
    status: Any = None


Body = Annotated[ThreadBody, Depends(json_body(ThreadBody, optional=True))]


def write_event(request: Request, change: Callable[..., DiscussionEvent], *args: Any) -> dict[str, Any]:
    """Run ``change(session, *args)`` (a service of :mod:`~openckpt.hub.services.community.discussions` making one
    event) with its webhook deliveries (``threads.record``); the event as the Hub shows it."""
    events = getattr(request.app.state, "webhooks", None)
    base_url = str(request.base_url).rstrip("/")
    event = threads.record(hub_of(request).db, lambda session: change(session, *args), events=events, base_url=base_url)
    return discussions.event_json(event)


def open_thread(
    request: Request, principal: Principal | None, repo_type: str, repo_id: str, body: dict[str, Any]
) -> int:
    """Open a discussion (``body``: title, description, pullRequest) with its webhook deliveries
    (``threads.open_thread``); its number."""
    return threads.open_thread(
        hub_of(request).db,
        principal,
        repo_type=repo_type,
        repo_id=repo_id,
        fields=body,
        events=getattr(request.app.state, "webhooks", None),
        base_url=str(request.base_url).rstrip("/"),
    )


@router.post(BASE)
async def create_discussion(request: Request, body: Body, principal: PrincipalDep, repo: RepoDep) -> dict[str, Any]:
    fields = {"title": body.title, "description": body.description, "pullRequest": body.pull_request}
    num = await run_in_threadpool(open_thread, request, principal, repo.type, repo.id, fields)
    return {"num": num}


@router.post(BASE + "/{num}/comment")
async def comment(request: Request, body: Body, principal: PrincipalDep, repo: RepoDep, num: int) -> dict[str, Any]:
    where = (principal, repo.type, repo.id, num)
    event = await run_in_threadpool(write_event, request, discussions.comment, *where, body.comment)
    return {"newMessage": event}


@router.post(BASE + "/{num}/comment/{comment_id}/edit")
async def edit_comment(
    request: Request, body: Body, principal: PrincipalDep, repo: RepoDep, num: int, comment_id: str
) -> dict[str, Any]:
    where = (principal, repo.type, repo.id, num)
    event = await run_in_threadpool(write_event, request, discussions.edit_comment, *where, comment_id, body.content)
    return {"updatedComment": event}


@router.post(BASE + "/{num}/comment/{comment_id}/hide")
async def hide_comment(
    request: Request, principal: PrincipalDep, repo: RepoDep, num: int, comment_id: str
) -> dict[str, Any]:
    where = (principal, repo.type, repo.id, num)
    event = await run_in_threadpool(write_event, request, discussions.hide_comment, *where, comment_id)
    return {"updatedComment": event}


@router.post(BASE + "/{num}/title")
async def rename(request: Request, body: Body, principal: PrincipalDep, repo: RepoDep, num: int) -> dict[str, Any]:
    where = (principal, repo.type, repo.id, num)
    event = await run_in_threadpool(write_event, request, discussions.rename, *where, body.title)
    return {"newTitle": event}


@router.post(BASE + "/{num}/status")
async def change_status(
    request: Request, body: Body, principal: PrincipalDep, repo: RepoDep, num: int
) -> dict[str, Any]:
    where = (principal, repo.type, repo.id, num)
    event = await run_in_threadpool(write_event, request, discussions.change_status, *where, body.status, body.comment)
    return {"newStatus": event}


def merge_pull_request(
    request: Request, principal: Principal | None, repo_type: str, repo_id: str, num: int, comment: Any
) -> Repo:
    """Merge pull request ``num``, its webhook deliveries (the target's new head, the pull request's status) in the
    merge's own transaction (``pull_requests.merge`` refreshes the metadata the new head changes). The repo."""
    hub = hub_of(request)
    repo, _, _, _ = pull_requests.merge(
        hub.db,
        hub.store,
        settings=hub.settings,
        request=pull_requests.MergeRequest(
            principal, repo_type, repo_id, num, comment=comment if isinstance(comment, str) else None
        ),
        on_merged=pr_merged(request),
    )
    wake(request)
    return repo


@router.post(BASE + "/{num}/merge")
async def merge(request: Request, body: Body, principal: PrincipalDep, repo: RepoDep, num: int) -> dict[str, Any]:
    await run_in_threadpool(merge_pull_request, request, principal, repo.type, repo.id, num, body.comment)
    return {}
