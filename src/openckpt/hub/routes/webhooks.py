"""The caller's webhooks under ``/api/settings/webhooks``, and how routes report changes: :func:`change_events`
(with :func:`named_event`), and the discussion domain's :func:`announce_discussion`, :func:`pr_recorded`,
:func:`pr_merged`. Every one writes its deliveries in the change's own transaction, so an answered call has its
delivery durable; commits write theirs in ``services/commit_flow.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openckpt.hub.bodies import JsonObject
from openckpt.hub.context import hub_of
from openckpt.hub.db.models import Discussion, DiscussionEvent, Repo
from openckpt.hub.deps import DbDep, HubDep, SettingsDep, UserDep, json_body
from openckpt.hub.services.community import threads
from openckpt.hub.services.pull_requests import Merged, Recorded
from openckpt.hub.services.repos import repo_named
from openckpt.hub.services.sealed import sealing_key
from openckpt.hub.services.webhooks import registry as webhooks
from openckpt.hub.services.webhooks.delivery import Deliveries, Event, RefUpdate, repo_event

router = APIRouter()


@contextmanager
def change_events(request: Request, make: Callable[[Session], Event | None]) -> Iterator[None]:
    """Around a change a service makes in one write transaction (settings, a move, a deletion): the event that
    ``make(session)`` returns at the end of that transaction, before it commits, is written in it (None: nothing to
    announce). Once: write transactions of the block after the first that commits with an event add nothing. The
    workers are woken after the block."""
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    if deliveries is None:
        yield
        return
    done = False

    def committed(_: Session) -> None:
        nonlocal done
        done = True

    def work(session: Session) -> None:
        if done or (event := make(session)) is None:
            return
        deliveries.enqueue(session, event)
        sa_event.listen(session, "after_commit", committed, once=True)

    with hub_of(request).db.joined(work):
        yield
    deliveries.wake()


def named_event(repo_type: str, repo_id: str, action: str, **details: object) -> Callable[[Session], Event | None]:
    """The event of the repo of that name as the change's transaction leaves it (for :func:`change_events`)."""

    def event(session: Session) -> Event | None:
        found = repo_named(session, repo_type, repo_id=repo_id)
        return None if found is None else repo_event(found, action, scope="repo", **details)

    return event


def wake(request: Request) -> None:
    """Have the webhook workers send what a transaction that just committed wrote."""
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    if deliveries is not None:
        deliveries.wake()


def announce_discussion(
    request: Request, session: Session, d: Discussion, event: DiscussionEvent | None, action: str
) -> None:
    """Write the webhook deliveries of a change of discussion ``d`` in ``session``'s transaction, the change's own
    (``threads.announce``); :func:`wake` after it commits."""
    events: Deliveries | None = getattr(request.app.state, "webhooks", None)
    base_url = str(request.base_url).rstrip("/")
    threads.announce(session, events, discussion=d, event=event, action=action, base_url=base_url)


def pr_recorded(request: Request, *, opened: bool) -> Recorded:
    """For ``commit_flow.commit(on_pr_commit=...)``: the pull request's ``discussion`` event in the commit's own
    transaction, ``create`` for one this commit opened (``create_pr``), else ``update``."""

    def on_recorded(session: Session, d: Discussion, event: DiscussionEvent) -> None:
        announce_discussion(request, session, d, None, "create" if opened else "update")

    return on_recorded


def pr_merged(request: Request) -> Merged:
    """For ``pull_requests.merge``: the target branch's ``repo.content`` event (if it moved) and the pull request's
    ``discussion`` update, in the merge's own transaction."""

    def on_merged(session: Session, repo: Repo, d: Discussion, old: str, new: str) -> None:
        deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
        if deliveries is not None and old != new:
            moved = RefUpdate(f"refs/heads/{d.target_branch}", old, new)
            deliveries.enqueue(
                session, repo_event(repo, "update", scope="repo.content", head_sha=new, updated_refs=(moved,))
            )
        announce_discussion(request, session, d, None, "update")

    return on_merged


async def _key(settings: SettingsDep) -> bytes:
    """What webhook secrets are sealed with."""
    return sealing_key(settings.secret)


KeyDep = Annotated[bytes, Depends(_key)]


class WebhookBody(JsonObject):
    """``HfApi.create_webhook`` and ``update_webhook``: the service checks each value (an update changes what is
    sent); Spaces' jobs and secrets are refused there."""

    expected = "expected a JSON object {url, watched, domains?, secret?}"
    url: Any = None
    watched: Any = None
    domains: Any = None
    secret: Any = None
    job_source_id: Any = Field(None, alias="jobSourceId")
    secrets: Any = None

    def fields(self) -> dict[str, Any]:
        """The body as the service reads it: by the keys the client sends, unsent ones None."""
        return self.model_dump(by_alias=True)


Body = Annotated[WebhookBody, Depends(json_body(WebhookBody, optional=True))]


@router.get("/api/settings/webhooks")
def list_webhooks(db: DbDep, principal: UserDep, key: KeyDep) -> list[dict[str, Any]]:
    return webhooks.list_webhooks(db, principal, key=key)


@router.post("/api/settings/webhooks")
async def create_webhook(hub: HubDep, principal: UserDep, body: Body, key: KeyDep) -> dict[str, Any]:
    create = partial(webhooks.create_webhook, allow_local=hub.settings.webhooks_allow_local, key=key)
    return {"webhook": await run_in_threadpool(create, hub.db, principal, body=body.fields())}


@router.get("/api/settings/webhooks/{webhook_id}")
def get_webhook(db: DbDep, principal: UserDep, key: KeyDep, webhook_id: str) -> dict[str, Any]:
    return {"webhook": webhooks.get_webhook(db, principal, webhook_id=webhook_id, key=key)}


@router.post("/api/settings/webhooks/{webhook_id}")
async def update_webhook(hub: HubDep, principal: UserDep, body: Body, key: KeyDep, webhook_id: str) -> dict[str, Any]:
    update = partial(webhooks.update_webhook, allow_local=hub.settings.webhooks_allow_local, key=key)
    return {"webhook": await run_in_threadpool(update, hub.db, principal, webhook_id=webhook_id, body=body.fields())}


@router.post("/api/settings/webhooks/{webhook_id}/enable")
def enable_webhook(db: DbDep, principal: UserDep, key: KeyDep, webhook_id: str) -> dict[str, Any]:
    return {"webhook": webhooks.set_disabled(db, principal, webhook_id=webhook_id, disabled=False, key=key)}


@router.post("/api/settings/webhooks/{webhook_id}/disable")
def disable_webhook(db: DbDep, principal: UserDep, key: KeyDep, webhook_id: str) -> dict[str, Any]:
    return {"webhook": webhooks.set_disabled(db, principal, webhook_id=webhook_id, disabled=True, key=key)}


@router.delete("/api/settings/webhooks/{webhook_id}")
def delete_webhook(db: DbDep, principal: UserDep, webhook_id: str) -> Response:
    webhooks.delete_webhook(db, principal, webhook_id=webhook_id)
    return Response(status_code=200)
