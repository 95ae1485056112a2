"""Deliveries of webhooks: the Hub's payloads (version 3), POSTed in the background after a change of a repo.

An event becomes rows of the ``webhook_outbox`` table, one per enabled webhook watching the repo (by its name, or its
owner's) whose owner may read it, written by :meth:`Deliveries.enqueue` in the transaction of the change itself
(``commit_flow.announce`` for a commit, :meth:`Database.joined` around other changes), so they commit or roll back
with it and survive a restart or a SIGKILL. :meth:`Deliveries.emit` writes them in a transaction of their own just
after a change committed (a crash between the two loses that event).

Worker threads of every server claim due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, then a ``claimed_until``
lease), only the oldest row of each webhook, so a webhook hears its events in the order they were written. Each is
POSTed with a short timeout, with its ``X-Webhook-Delivery`` id: deleted once a receiver answers 2xx (at least once:
a server killed after the POST and before the delete sends it again, same id), retried for transport errors, 429
and 5xx up to :data:`ATTEMPTS` tries with backoff, and dropped (logged) after the last try or on any other answer.
A commit wakes the workers at once; they also poll for rows of other servers or of a previous run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Membership, Repo, Webhook, WebhookOutbox, utcnow
from openckpt.hub.services.sealed import unseal
from openckpt.hub.services.webhooks import netguard
from openckpt.hub.services.webhooks.netguard import local_target
from openckpt.protocol import REPO_TYPE_PLURAL, REPO_TYPE_PREFIX

__all__ = ["Deliveries", "Event", "RefUpdate", "RepoSnapshot", "local_target", "repo_event"]

log = logging.getLogger("openckpt.hub.webhooks")

WORKERS = 4
ATTEMPTS = 4
"""Tries of one delivery: the first and three retries, after ``BACKOFF * 2**n`` seconds."""
BACKOFF = 1.0
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
BATCH = 4
"""Rows one worker claims at once (each of a different webhook)."""
LEASE = timedelta(seconds=120)
"""How long a claim holds: longer than ``BATCH`` sends (a server killed while sending leaves its rows this long)."""
POLL = 5.0
"""Longest sleep of an idle worker: rows written by other servers or left by a previous run are found this late."""


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
    scope: str  # repo | repo.content | repo.config | discussion | discussion.comment
    repo: RepoSnapshot
    head_sha: str | None = None
    """The commit a commit or squash made (other events carry none)."""
    updated_refs: tuple[RefUpdate, ...] = ()
    updated_config: dict[str, Any] = field(default_factory=dict)
    moved_from: str | None = None
    """For ``move``: the repo's old ``owner/name`` (webhooks watching it or its old owner hear of the move too)."""
    at: datetime = field(default_factory=utcnow)
    """When it happened: webhooks created later do not hear of it."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Payload fields beside the repo's: ``discussion`` and ``comment`` of a ``discussion`` or ``discussion.comment``
    event (those go to webhooks of the ``discussion`` domain)."""


def repo_event(repo: Repo, action: str, *, scope: str, **details: Any) -> Event:
    """An event of ``repo`` (a loaded row, with its owner) as it is now."""
    snapshot = RepoSnapshot(repo.id, repo.type, repo.owner_id, repo.owner.name, repo.name, repo.private)
    return Event(action, scope, snapshot, **details)


@dataclass(frozen=True)
class _Delivery:
    url: str
    body: bytes
    secret: str | None
    webhook_id: str
    id: int = 0
    """Its outbox row, sent as ``X-Webhook-Delivery``."""
    attempts: int = 0
    """Tries made before this one."""


def _watches(hook: Webhook, repo_type: str, repo_id: str) -> bool:
    owner = repo_id.partition("/")[0]
    for item in hook.watched:
        if item.get("type") == repo_type and item.get("name") == repo_id:
            return True
        if item.get("type") in ("user", "org") and item.get("name") == owner:
            return True
    return False


class Deliveries:
    """The webhook deliveries of one server process: the outbox's rows and a few worker threads sending them."""

    def __init__(self, db: Database, public_url: str, *, key: bytes, allow_local: bool = False) -> None:
        """``key`` unseals the webhooks' secrets (:mod:`openckpt.hub.services.sealed`)."""
        self.db, self.public_url, self.allow_local = db, public_url.rstrip("/"), allow_local
        self.key = key
        self.name = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Who claims rows (``webhook_outbox.claimed_by``)."""
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._wake = threading.Event()

    def enqueue(self, session: Session, event: Event) -> int:
        """Write the deliveries of ``event`` in ``session``'s transaction; return how many."""
        rows = [
            WebhookOutbox(webhook_id=hook_id, payload=payload) for hook_id, payload in self._fan_out(session, event)
        ]
        session.add_all(rows)
        return len(rows)

    def emit(self, event: Event) -> None:
        """Write the deliveries of ``event`` in a transaction of their own and wake the workers; never raises. On an
        event loop it does not wait for the database: a thread writes them right after."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._emit(event)
        else:
            loop.run_in_executor(None, self._emit, event)

    def _emit(self, event: Event) -> None:
        try:
            with self.db.write() as session:
                self.enqueue(session, event)
        except Exception:  # the change is made: its webhooks must not turn it into an error
            log.exception("webhook event %s not written", event)
        self.wake()

    def wake(self) -> None:
        """Have the workers look for due rows now (after a transaction that wrote some committed)."""
        self.start()
        self._wake.set()

    def start(self) -> None:
        """Start the worker threads (once): they send the rows already waiting too."""
        with self._lock:
            if self._threads or self._stopped.is_set():
                return
            for number in range(WORKERS):
                thread = threading.Thread(target=self._work, name=f"openckpt-webhooks-{number}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        """Let the workers end; rows not yet sent stay in the outbox for the next run or another server."""
        self._stopped.set()
        self._wake.set()

    def _work(self) -> None:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            while not self._stopped.is_set():
                try:
                    claimed = self._claim()
                    for delivery in claimed:
                        self._finish(delivery, self._send(client, delivery))
                    if claimed:
                        continue
                    pause = self._next_due()
                except Exception:  # a worker outlives any one row, and a database that is briefly away
                    log.exception("webhook worker failed")
                    pause = POLL
                if self._wake.wait(pause):
                    self._wake.clear()

    def _claim(self) -> list[_Delivery]:
        """Claim the due head rows (the oldest of their webhook) no one holds, up to :data:`BATCH`."""
        now = utcnow()
        heads = select(func.min(WebhookOutbox.id)).group_by(WebhookOutbox.webhook_id)
        due = (
            select(WebhookOutbox)
            .where(WebhookOutbox.id.in_(heads), WebhookOutbox.next_attempt_at <= now)
            .where(or_(WebhookOutbox.claimed_until.is_(None), WebhookOutbox.claimed_until < now))
            .order_by(WebhookOutbox.id)
            .limit(BATCH)
        )
        with self.db.write() as session:
            if session.get_bind().dialect.name == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows = list(session.scalars(due))
            if not rows:
                return []
            hooks = {
                h.id: h for h in session.scalars(select(Webhook).where(Webhook.id.in_({r.webhook_id for r in rows})))
            }
            out = []
            for row in rows:
                row.claimed_by, row.claimed_until = self.name, now + LEASE
                hook = hooks.get(row.webhook_id)
                if hook is None or hook.disabled:
                    session.delete(row)  # disabled since the event: it hears of nothing
                    continue
                secret = unseal(self.key, hook.secret, owner=f"webhook:{hook.id}") if hook.secret else None
                body = json.dumps(row.payload).encode()
                out.append(_Delivery(hook.url, body, secret, hook.id, id=row.id, attempts=row.attempts))
            return out

    def _next_due(self) -> float:
        """Seconds until the earliest row not held by a claim is due (at most :data:`POLL`)."""
        with self.db.read() as session:
            soonest = session.scalar(
                select(func.min(WebhookOutbox.next_attempt_at)).where(WebhookOutbox.claimed_by.is_(None))
            )
        if soonest is None:
            return POLL
        return min(POLL, max(0.05, (soonest - utcnow()).total_seconds()))

    def _finish(self, delivery: _Delivery, retry: bool) -> None:
        """Delete the row of ``delivery`` (sent, or not to be retried), or release it to be tried again later."""
        tries = delivery.attempts + 1
        mine = (WebhookOutbox.id == delivery.id, WebhookOutbox.claimed_by == self.name)
        with self.db.write() as session:
            if retry and tries < ATTEMPTS:
                later = utcnow() + timedelta(seconds=BACKOFF * 2 ** (tries - 1))
                values = {"attempts": tries, "next_attempt_at": later, "claimed_by": None, "claimed_until": None}
                session.execute(update(WebhookOutbox).where(*mine).values(**values))
            else:
                session.execute(delete(WebhookOutbox).where(*mine))
        if retry and tries < ATTEMPTS:
            self._wake.set()  # an idle worker sleeps until the retry is due

    def _fan_out(self, session: Session, event: Event) -> list[tuple[str, dict[str, Any]]]:
        """A payload per enabled webhook watching the repo, of the event's domain (``repo`` or ``discussion``), whose
        owner may read it."""
        names = [event.repo.repo_id] + ([event.moved_from] if event.moved_from is not None else [])
        domain = "discussion" if event.scope.startswith("discussion") else "repo"
        enabled = select(Webhook).where(Webhook.disabled.is_(False), Webhook.created_at <= event.at)
        hooks = [
            h
            for h in session.scalars(enabled)
            if domain in h.domains and any(_watches(h, event.repo.type, n) for n in names)
        ]
        if not hooks:
            return []
        readers = {h.account_id for h in hooks}
        if event.repo.private:
            admins = set(session.scalars(select(Account.id).where(Account.id.in_(readers), Account.is_admin)))
            members = set(
                session.scalars(
                    select(Membership.user_id).where(
                        Membership.org_id == event.repo.owner_id, Membership.user_id.in_(readers)
                    )
                )
            )
            readers = admins | members | ({event.repo.owner_id} & readers)
        return [(hook.id, self._payload(event, hook.id)) for hook in hooks if hook.account_id in readers]

    def _payload(self, event: Event, webhook_id: str) -> dict[str, Any]:
        repo = event.repo
        web = f"{self.public_url}/{REPO_TYPE_PREFIX[repo.type]}"
        api = f"{self.public_url}/api/{REPO_TYPE_PLURAL[repo.type]}/"
        data: dict[str, Any] = {
            "event": {"action": event.action, "scope": event.scope},
            "repo": {
                "type": repo.type,
                "name": event.moved_from or repo.repo_id,
                "id": str(repo.id),
                "private": repo.private,
                "owner": {"id": str(repo.owner_id)},
                "url": {"web": web + repo.repo_id, "api": api + repo.repo_id},
            },
            "webhook": {"id": webhook_id, "version": 3},
        }
        if event.head_sha is not None:
            data["repo"]["headSha"] = event.head_sha
        if event.updated_refs:
            data["updatedRefs"] = [{"ref": r.ref, "oldSha": r.old, "newSha": r.new} for r in event.updated_refs]
        if event.updated_config:
            data["updatedConfig"] = event.updated_config
        if event.moved_from is not None:
            data["movedTo"] = {"name": repo.repo_id, "owner": repo.owner}
        data.update(event.extra)
        return data

    def _send(self, client: httpx.Client, delivery: _Delivery) -> bool:
        """One try to POST ``delivery`` to an address its name resolved to and :mod:`netguard` checked; whether it
        is worth another (transport errors, 429, 5xx)."""
        headers = {
            "content-type": "application/json",
            "user-agent": "openckpt-webhooks",
            "x-webhook-delivery": str(delivery.id),
        }
        if delivery.secret:
            headers["x-webhook-secret"] = delivery.secret
        try:
            response = netguard.post(
                client, delivery.url, content=delivery.body, headers=headers, allow_local=self.allow_local
            )
        except netguard.NotPublicError as e:
            where = f"{e}, on the hub's own network (OPENCKPT_WEBHOOKS_ALLOW_LOCAL allows it)"
            log.warning("webhook %s: not sent to %s: %s", delivery.webhook_id, delivery.url, where)
            return False
        except httpx.HTTPError as e:
            problem, retry = f"{type(e).__name__}: {e}", True
        else:
            if response.status_code < 300:
                return False
            problem, retry = f"HTTP {response.status_code}", response.status_code == 429 or response.status_code >= 500
        if not retry or delivery.attempts + 1 >= ATTEMPTS:
            log.warning("webhook %s: delivery to %s failed: %s", delivery.webhook_id, delivery.url, problem)
        return retry
