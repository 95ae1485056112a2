"""A discussion's changes with their webhook events: opening a thread, and each change making one event (a comment,
an edit, a hidden comment, a title or status change) runs with its webhook deliveries in one transaction, so a
change the caller saw succeed has its delivery durable; the delivery workers are woken after it commits. Also a
thread as its details page or the client reads it (its events in order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Discussion, DiscussionEvent, Repo
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.community import discussions
from openckpt.hub.services.webhooks.delivery import Deliveries, repo_event

__all__ = ["Change", "announce", "details", "open_thread", "record"]

Change = Callable[[Session], DiscussionEvent]
"""One change of a discussion in the session's transaction (a service of ``discussions`` with its arguments bound)."""


def announce(
    session: Session,
    events: Deliveries | None,
    *,
    discussion: Discussion,
    event: DiscussionEvent | None,
    action: str,
    base_url: str,
) -> None:
    """Write the webhook deliveries of a change of ``discussion`` (``event``: a comment's, for a
    ``discussion.comment`` event) in ``session``'s transaction, the change's own; links start with ``base_url``."""
    if events is None:
        return
    repo = session.get(Repo, discussion.repo_id)
    assert repo is not None
    scope = "discussion.comment" if event is not None and event.type == "comment" else "discussion"
    extra = discussions.webhook_fields(discussion, repo, event, base_url=base_url)
    events.enqueue(session, repo_event(repo, action, scope=scope, extra=extra))


def record(db: Database, change: Change, *, events: Deliveries | None, base_url: str) -> DiscussionEvent:
    """Run ``change`` and write its webhook deliveries (``create`` for a new comment, else ``update``) in one
    transaction; the event it made."""
    with db.write() as session:
        event = change(session)
        d = session.get(Discussion, event.discussion_id)
        assert d is not None
        created = event.type == "comment" and event.edits == 0 and not event.hidden
        announce(
            session, events, discussion=d, event=event, action="create" if created else "update", base_url=base_url
        )
    if events is not None:
        events.wake()
    return event


def open_thread(
    db: Database,
    principal: Principal | None,
    *,
    repo_type: str,
    repo_id: str,
    fields: dict[str, Any],
    events: Deliveries | None,
    base_url: str,
) -> int:
    """Open a discussion (``fields``: title, description, pullRequest: a draft pull request if true) and write its
    webhook deliveries in one transaction; its number."""
    with db.write() as session:
        _, d = discussions.open_discussion(
            session,
            principal,
            repo_type,
            repo_id,
            title=fields.get("title"),
            description=fields.get("description") or "",
            pull_request=discussions.PullRequestTarget() if fields.get("pullRequest") else None,
        )
        announce(session, events, discussion=d, event=None, action="create", base_url=base_url)
        num = d.num
    if events is not None:
        events.wake()
    return num


def details(db: Database, principal: Principal | None, *, repo_type: str, repo_id: str, num: int) -> dict[str, Any]:
    """Discussion ``num`` of a repo the caller sees, with its events in order, as the Hub sends it."""
    with db.read() as session:
        repo, d = discussions.find_discussion(session, principal, repo_type=repo_type, repo_id=repo_id, num=num)
        return discussions.discussion_json(d, repo, events=discussions.events_of(session, d))
