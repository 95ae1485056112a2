"""The caller's webhooks under ``/api/settings/webhooks``, and :func:`notify`, how routes report repo changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError
from openckpt.hub.bodies import read_json
from openckpt.hub.context import hub_of, require_principal
from openckpt.hub.db.models import Repo
from openckpt.hub.services import webhooks
from openckpt.hub.services.sealed import sealing_key
from openckpt.hub.services.webhook_delivery import Deliveries, Event

router = APIRouter()


def notify(request: Request, event: Event) -> None:
    """Write the webhook deliveries of ``event`` to the outbox, in a transaction of their own: call it once the change
    is committed (a commit writes them in its own transaction instead: :func:`commit_events`)."""
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    if deliveries is not None:
        deliveries.emit(event)


@contextmanager
def commit_events(request: Request, repo: Repo, branch: str, old: str) -> Iterator[None]:
    """Around a commit on ``branch`` of ``repo`` (at ``old``): its webhook deliveries are written in the commit's own
    transaction (they commit or roll back with it), and the workers woken after."""
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    if deliveries is None:
        yield
        return
    with hub_of(request).db.joined(deliveries.branch_moved(repo.id, branch, old)):
        yield
    deliveries.wake()


def _key(request: Request) -> bytes:
    """What webhook secrets are sealed with."""
    return sealing_key(hub_of(request).settings.secret)


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request, optional=True)
    if not isinstance(body, dict):
        raise BadRequestError("expected a JSON object {url, watched, domains?, secret?}")
    return body


@router.get("/api/settings/webhooks")
def list_webhooks(request: Request) -> list[dict[str, Any]]:
    return webhooks.list_webhooks(hub_of(request).db, require_principal(request), key=_key(request))


@router.post("/api/settings/webhooks")
async def create_webhook(request: Request) -> dict[str, Any]:
    principal, body, hub = require_principal(request), await _body(request), hub_of(request)
    create = partial(webhooks.create_webhook, allow_local=hub.settings.webhooks_allow_local, key=_key(request))
    return {"webhook": await run_in_threadpool(create, hub.db, principal, body)}


@router.get("/api/settings/webhooks/{webhook_id}")
def get_webhook(request: Request, webhook_id: str) -> dict[str, Any]:
    principal = require_principal(request)
    return {"webhook": webhooks.get_webhook(hub_of(request).db, principal, webhook_id, key=_key(request))}


@router.post("/api/settings/webhooks/{webhook_id}")
async def update_webhook(request: Request, webhook_id: str) -> dict[str, Any]:
    principal, body, hub = require_principal(request), await _body(request), hub_of(request)
    update = partial(webhooks.update_webhook, allow_local=hub.settings.webhooks_allow_local, key=_key(request))
    return {"webhook": await run_in_threadpool(update, hub.db, principal, webhook_id, body)}


@router.post("/api/settings/webhooks/{webhook_id}/enable")
def enable_webhook(request: Request, webhook_id: str) -> dict[str, Any]:
    principal = require_principal(request)
    return {"webhook": webhooks.set_disabled(hub_of(request).db, principal, webhook_id, False, key=_key(request))}


@router.post("/api/settings/webhooks/{webhook_id}/disable")
def disable_webhook(request: Request, webhook_id: str) -> dict[str, Any]:
    principal = require_principal(request)
    return {"webhook": webhooks.set_disabled(hub_of(request).db, principal, webhook_id, True, key=_key(request))}


@router.delete("/api/settings/webhooks/{webhook_id}")
def delete_webhook(request: Request, webhook_id: str) -> Response:
    webhooks.delete_webhook(hub_of(request).db, require_principal(request), webhook_id)
    return Response(status_code=200)
