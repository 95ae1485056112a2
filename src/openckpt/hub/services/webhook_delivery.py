"""Deliveries of webhooks: the Hub's payloads (version 3), POSTed in the background after a change of a repo.

:meth:`Deliveries.emit` only queues the event: it never waits on the database or the network, and a full queue
drops the event (logged). Worker threads find the enabled webhooks watching the repo (by its name, or its owner's)
whose owner may read it, and POST each its payload with a short timeout, retrying transport errors, 429 and 5xx a
bounded number of times with backoff. Events still queued when the process stops are lost.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Membership, Repo, Webhook, utcnow
from openckpt.hub.services import netguard
from openckpt.hub.services.netguard import local_target
from openckpt.hub.services.sealed import unseal
from openckpt.protocol import REPO_TYPE_PLURAL, REPO_TYPE_PREFIX

__all__ = ["Deliveries", "Event", "RefUpdate", "RepoSnapshot", "local_target", "repo_event"]

log = logging.getLogger("openckpt.hub.webhooks")

QUEUE_SIZE = 1000
WORKERS = 4
ATTEMPTS = 4
"""Tries of one delivery: the first and three retries, after ``BACKOFF * 2**n`` seconds."""
BACKOFF = 1.0
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class RepoSnapshot:
    """A repo as it was when the event happened (a deleted repo has no row left to read)."""

    id: int
    type: str
    owner_id: int
    owner: str
    name: str
    private: bool

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class RefUpdate:
    """A ref that moved: ``old`` None for a new ref, ``new`` None for a deleted one."""

    ref: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Event:
    action: str  # create | update | delete | move
    scope: str  # repo | repo.content | repo.config
    repo: RepoSnapshot
    head_sha: str | None = None
    """The commit a commit or squash made (other events carry none)."""
    updated_refs: tuple[RefUpdate, ...] = ()
    updated_config: dict[str, Any] = field(default_factory=dict)
    moved_from: str | None = None
    """For ``move``: the repo's old ``owner/name`` (webhooks watching it or its old owner hear of the move too)."""
    at: datetime = field(default_factory=utcnow)
    """When it happened: webhooks created later do not hear of it."""


def repo_event(repo: Repo, action: str, scope: str, **details: Any) -> Event:
    """An event of ``repo`` (a loaded row, with its owner) as it is now."""
    snapshot = RepoSnapshot(repo.id, repo.type, repo.owner_id, repo.owner.name, repo.name, repo.private)
    return Event(action, scope, snapshot, **details)


@dataclass(frozen=True)
class _Delivery:
    url: str
    body: bytes
    secret: str | None
    webhook_id: str


def _watches(hook: Webhook, repo_type: str, repo_id: str) -> bool:
    owner = repo_id.partition("/")[0]
    for item in hook.watched:
        if item.get("type") == repo_type and item.get("name") == repo_id:
            return True
        if item.get("type") in ("user", "org") and item.get("name") == owner:
            return True
    return False


class Deliveries:
    """The webhook deliveries of one server process: a bounded queue and a few worker threads (started lazily)."""

    def __init__(self, db: Database, public_url: str, *, key: bytes, allow_local: bool = False) -> None:
        """``key`` unseals the webhooks' secrets (:mod:`openckpt.hub.services.sealed`)."""
        self.db, self.public_url, self.allow_local = db, public_url.rstrip("/"), allow_local
        self.key = key
        self._queue: queue.Queue[Event | _Delivery | None] = queue.Queue(QUEUE_SIZE)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def emit(self, event: Event) -> None:
        """Queue ``event``; never blocks, never raises."""
        self._start()
        self._put(event)

    def stop(self) -> None:
        """Let the workers end (deliveries waiting in the queue are dropped)."""
        self._stopped.set()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break

    def _put(self, item: Event | _Delivery) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.warning("webhook queue full (%d): dropped %s", QUEUE_SIZE, item)

    def _start(self) -> None:
        with self._lock:
            if self._threads or self._stopped.is_set():
                return
            for number in range(WORKERS):
                thread = threading.Thread(target=self._work, name=f"openckpt-webhooks-{number}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            while not self._stopped.is_set():
                item = self._queue.get()
                try:
                    if isinstance(item, Event):
                        for delivery in self._fan_out(item):
                            self._put(delivery)
                    elif isinstance(item, _Delivery):
                        self._send(client, item)
                except Exception:  # a worker outlives any one event
                    log.exception("webhook event %s failed", item)

    def _fan_out(self, event: Event) -> list[_Delivery]:
        """A delivery per enabled webhook watching the repo, of the ``repo`` domain, whose owner may read it."""
        names = [event.repo.repo_id] + ([event.moved_from] if event.moved_from is not None else [])
        with self.db.read() as session:
            enabled = select(Webhook).where(Webhook.disabled.is_(False), Webhook.created_at <= event.at)
            hooks = [h for h in session.scalars(enabled)
                     if "repo" in h.domains and any(_watches(h, event.repo.type, n) for n in names)]  # fmt: skip
            if not hooks:
                return []
            readers = {h.account_id for h in hooks}
            if event.repo.private:
                admins = set(session.scalars(select(Account.id).where(Account.id.in_(readers), Account.is_admin)))
                members = set(session.scalars(select(Membership.user_id).where(
                    Membership.org_id == event.repo.owner_id, Membership.user_id.in_(readers))))  # fmt: skip
                readers = admins | members | ({event.repo.owner_id} & readers)
        out = []
        for hook in hooks:
            if hook.account_id in readers:
                body = json.dumps(self._payload(event, hook.id)).encode()
                secret = unseal(self.key, hook.secret, owner=f"webhook:{hook.id}") if hook.secret else None
                out.append(_Delivery(hook.url, body, secret, hook.id))
        return out

    def _payload(self, event: Event, webhook_id: str) -> dict[str, Any]:
        repo = event.repo
        web = f"{self.public_url}/{REPO_TYPE_PREFIX[repo.type]}"
        api = f"{self.public_url}/api/{REPO_TYPE_PLURAL[repo.type]}/"
        data: dict[str, Any] = {
            "event": {"action": event.action, "scope": event.scope},
            "repo": {"type": repo.type, "name": event.moved_from or repo.repo_id, "id": str(repo.id),
                     "private": repo.private, "owner": {"id": str(repo.owner_id)},
                     "url": {"web": web + repo.repo_id, "api": api + repo.repo_id}},
            "webhook": {"id": webhook_id, "version": 3},
        }  # fmt: skip
        if event.head_sha is not None:
            data["repo"]["headSha"] = event.head_sha
        if event.updated_refs:
            data["updatedRefs"] = [{"ref": r.ref, "oldSha": r.old, "newSha": r.new} for r in event.updated_refs]
        if event.updated_config:
            data["updatedConfig"] = event.updated_config
        if event.moved_from is not None:
            data["movedTo"] = {"name": repo.repo_id, "owner": repo.owner}
        return data

    def _send(self, client: httpx.Client, delivery: _Delivery) -> None:
        """POST ``delivery`` to an address its name resolved to and :mod:`netguard` checked, with bounded retries."""
        headers = {"content-type": "application/json", "user-agent": "openckpt-webhooks"}
        if delivery.secret:
            headers["x-webhook-secret"] = delivery.secret
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt and self._stopped.wait(BACKOFF * 2 ** (attempt - 1)):
                return
            try:
                response = netguard.post(
                    client, delivery.url, content=delivery.body, headers=headers, allow_local=self.allow_local
                )
            except netguard.NotPublicError as e:
                where = f"{e}, on the hub's own network (OPENCKPT_WEBHOOKS_ALLOW_LOCAL allows it)"
                log.warning("webhook %s: not sent to %s: %s", delivery.webhook_id, delivery.url, where)
                return
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if response.status_code < 300:
                return
            problem = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                break
        log.warning("webhook %s: delivery to %s failed: %s", delivery.webhook_id, delivery.url, problem)
