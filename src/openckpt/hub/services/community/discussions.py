"""Discussions of a repo, as on the Hub: numbered per repo (pull requests share the numbers), each with its events.

Who may do what follows the Hub: whoever reads a repo (and, if it is gated, has access) opens discussions and
comments with a write token; the author of a discussion renames, closes and reopens it, the author of a comment
edits it; the repo's writers rename, close, reopen and hide anything. A private repo the caller cannot read stays
a :class:`RepoNotFoundError`. The JSON shapes are those ``huggingface_hub``'s ``community.py`` parses; a comment's
``html`` is its Markdown through the cards' sanitiser.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openckpt.errors import (
    BadRequestError,
    DiscussionNotFoundError,
    ForbiddenError,
    GatedRepoError,
    UnauthorizedError,
)
from openckpt.hub.db.models import Discussion, DiscussionEvent, Repo, utcnow
from openckpt.hub.services.access import has_access
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.render import render_markdown
from openckpt.hub.services.repos import find_repo

__all__ = [
    "PAGE",
    "Listing",
    "PullRequestTarget",
    "add_event",
    "discussion_json",
    "event_json",
    "events_of",
    "find_discussion",
    "webhook_fields",
    "list_discussions",
    "may_moderate",
    "may_take_part",
    "next_num",
    "require_participant",
    "threads",
]

PAGE = 50
MAX_TITLE = 200
HIDDEN = "This comment has been hidden"
STATUSES = ("open", "closed", "merged", "draft")


def _iso(value: Any) -> str:
    return str(value.isoformat(timespec="milliseconds")) + "Z"


def event_json(event: DiscussionEvent) -> dict[str, Any]:
    """An event as the Hub sends it (``community.deserialize_event`` reads it)."""
    out: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "createdAt": _iso(event.created_at),
        "author": {"name": event.author, "type": "user"},
    }
    if event.type == "comment":
        raw = HIDDEN if event.hidden else event.content
        out["data"] = {
            "edited": event.edits > 0,
            "hidden": event.hidden,
            "numEdits": event.edits,
            "latest": {"raw": raw, "html": render_markdown(raw), "author": {"name": event.author}},
        }
    elif event.type == "status-change":
        out["data"] = {"status": event.content}
    elif event.type == "commit":
        out["data"] = {"subject": event.content, "oid": event.old}
    elif event.type == "title-change":
        out["data"] = {"from": event.old, "to": event.content}
    return out


def discussion_json(d: Discussion, repo: Repo, *, events: list[DiscussionEvent] | None = None) -> dict[str, Any]:
    """A discussion as listed; with ``events``, its details (``get_discussion_details``)."""
    out: dict[str, Any] = {
        "num": d.num,
        "title": d.title,
        "status": d.status,
        "createdAt": _iso(d.created_at),
        "isPullRequest": d.is_pull_request,
        "author": {"name": d.author, "type": "user"},
        "pinned": False,
        "repo": {"name": f"{repo.owner.name}/{repo.name}", "type": repo.type},
    }
    if events is not None:
        out["events"] = [event_json(e) for e in events]
        if d.is_pull_request:
            out["changes"] = {"base": f"refs/heads/{d.target_branch}", "head": f"refs/pr/{d.num}"}
            if d.merge_commit is not None:
                out["changes"]["mergeCommitId"] = d.merge_commit
            out["filesWithConflicts"] = []
    return out


@dataclass(frozen=True)
class Listing:
    """One page of a repo's discussions and how many match in all."""

    discussions: list[dict[str, Any]]
    count: int
    start: int


def list_discussions(
    session: Session, repo: Repo, *, page: int, kind: str | None, status: str | None, author: str | None
) -> Listing:
    """Page ``page`` (from 0) of the discussions of ``repo``, newest first, filtered as ``get_repo_discussions``
    filters them (``type``: discussion | pull_request | all; ``status``: open | closed | merged | draft | all)."""
    query = select(Discussion).where(Discussion.repo_id == repo.id)
    if kind in ("discussion", "pull_request"):
        query = query.where(Discussion.is_pull_request == (kind == "pull_request"))
    elif kind not in (None, "", "all"):
        raise BadRequestError(f"type must be discussion, pull_request or all, got {kind!r}")
    if status in STATUSES:
        query = query.where(Discussion.status == status)
    elif status not in (None, "", "all"):
        raise BadRequestError(f"status must be one of {', '.join(STATUSES)} or all, got {status!r}")
    if author:
        query = query.where(Discussion.author == author)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    start = max(page, 0) * PAGE
    rows = session.scalars(query.order_by(Discussion.num.desc()).offset(start).limit(PAGE))
    return Listing([discussion_json(d, repo) for d in rows], count, start)


def threads(
    session: Session, repo: Repo, *, statuses: tuple[str, ...], pull_requests: bool | None, offset: int, limit: int
) -> tuple[list[tuple[Discussion, int]], int]:
    """The discussions of ``repo`` in ``statuses`` (all if empty), only pull requests or none of them unless
    ``pull_requests`` is None, newest first, each with its number of comments; and how many match in all."""
    query = select(Discussion).where(Discussion.repo_id == repo.id)
    if statuses:
        query = query.where(Discussion.status.in_(statuses))
    if pull_requests is not None:
        query = query.where(Discussion.is_pull_request == pull_requests)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(Discussion.num.desc()).offset(offset).limit(limit)))
    comments = dict(
        session.execute(
            select(DiscussionEvent.discussion_id, func.count())
            .where(DiscussionEvent.discussion_id.in_([d.id for d in rows]), DiscussionEvent.type == "comment")
            .group_by(DiscussionEvent.discussion_id)
        ).all()
    )
    return [(d, int(comments.get(d.id, 0))) for d in rows], count


def find_discussion(
    session: Session, principal: Principal | None, *, repo_type: str, repo_id: str, num: int
) -> tuple[Repo, Discussion]:
    """The repo (if the caller sees it) and its discussion ``num``."""
    repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
    d = session.scalar(select(Discussion).where(Discussion.repo_id == repo.id, Discussion.num == num))
    if d is None:
        raise DiscussionNotFoundError(f"Discussion #{num} not found in {repo_id}")
    return repo, d


def require_participant(session: Session, principal: Principal | None, repo: Repo) -> Principal:
    """The caller, if they may open discussions and comment in ``repo``: signed in with a write token, and given
    access if the repo is gated."""
    if principal is None:
        raise UnauthorizedError("sign in to take part in discussions")
    if not principal.can_write:
        raise ForbiddenError("this token is read-only: discussions need a write token")
    if repo.gated and not has_access(session, principal, repo=repo):
        raise GatedRepoError(f"{repo.owner.name}/{repo.name} is gated: request access to take part in discussions")
    return principal


def may_take_part(session: Session, principal: Principal | None, *, repo: Repo) -> bool:
    """Whether :func:`require_participant` lets the caller open discussions and comment in ``repo``."""
    return (
        principal is not None and principal.can_write and (not repo.gated or has_access(session, principal, repo=repo))
    )


def events_of(session: Session, d: Discussion) -> list[DiscussionEvent]:
    """The events of ``d``, oldest first."""
    query = select(DiscussionEvent).where(DiscussionEvent.discussion_id == d.id)
    return list(session.scalars(query.order_by(DiscussionEvent.created_at, DiscussionEvent.id)))


def may_moderate(principal: Principal, repo: Repo) -> bool:
    """Whether the caller writes to ``repo``, so may merge, close, hide and rename anything in it."""
    return principal.may_write(repo)


def next_num(session: Session, repo_id: int) -> int:
    """The next free number of a discussion or pull request of the repo (a race ends in an IntegrityError)."""
    return int(session.scalar(select(func.max(Discussion.num)).where(Discussion.repo_id == repo_id)) or 0) + 1


def add_event(
    session: Session, d: Discussion, kind: str, author: str, content: str, old: str | None = None
) -> DiscussionEvent:
    """Record an event of ``d`` now."""
    event = DiscussionEvent(
        id=secrets.token_hex(12),
        discussion_id=d.id,
        type=kind,
        author=author,
        created_at=utcnow(),
        content=content,
        old=old,
        hidden=False,
        edits=0,
    )
    session.add(event)
    session.flush()
    return event


def check_title(title: Any) -> str:
    """A title, stripped: a non-empty string of at most 200 characters."""
    if not isinstance(title, str) or not title.strip():
        raise BadRequestError("a title is needed")
    if len(title.strip()) > MAX_TITLE:
        raise BadRequestError(f"a title has at most {MAX_TITLE} characters")
    return title.strip()


def _author_or_moderator(principal: Principal, repo: Repo, author: str, what: str) -> None:
    if principal.name != author and not may_moderate(principal, repo):
        raise ForbiddenError(f"only its author or a writer of the repo may {what}")


@dataclass(frozen=True)
class PullRequestTarget:
    """Where a new pull request goes: onto ``branch``, its ref ``refs/pr/N`` starting at revision ``base`` (by
    default the branch's head)."""

    branch: str = "main"
    base: str | None = None


def open_discussion(
    session: Session,
    principal: Principal | None,
    repo_type: str,
    repo_id: str,
    *,
    title: Any,
    description: Any,
    pull_request: PullRequestTarget | None = None,
) -> tuple[Repo, Discussion]:
    """Open a discussion, or with ``pull_request`` a draft pull request (see :class:`PullRequestTarget`), with
    ``description`` as its first comment."""
    from openckpt.hub.services.commits import resolve_revision

    repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
    who = require_participant(session, principal, repo)
    if not isinstance(description, str):
        raise BadRequestError("description must be a string")
    d = Discussion(
        repo_id=repo.id,
        num=next_num(session, repo.id),
        title=check_title(title),
        author=who.name,
        is_pull_request=pull_request is not None,
        status="open" if pull_request is None else "draft",
        created_at=utcnow(),
    )
    if pull_request is not None:
        from openckpt.hub.db.models import Ref

        target = pull_request.branch
        if session.get(Ref, (repo.id, "branch", target)) is None:
            raise BadRequestError(f"a pull request targets a branch: {target!r} is none")
        head = resolve_revision(session, repo, rev=pull_request.base or target).id
        d.target_branch, d.base_commit = target, head
        session.add(Ref(repo_id=repo.id, kind="pr", name=f"refs/pr/{d.num}", commit_id=head))
    session.add(d)
    session.flush()
    if description.strip():
        add_event(session, d, "comment", who.name, description.strip())
    return repo, d


def comment(
    session: Session, principal: Principal | None, repo_type: str, repo_id: str, num: int, text: Any
) -> DiscussionEvent:
    """Add a comment to discussion ``num``."""
    repo, d = find_discussion(session, principal, repo_type=repo_type, repo_id=repo_id, num=num)
    who = require_participant(session, principal, repo)
    if not isinstance(text, str) or not text.strip():
        raise BadRequestError("a comment needs some text")
    return add_event(session, d, "comment", who.name, text)


def _comment_of(session: Session, d: Discussion, comment_id: str) -> DiscussionEvent:
    event = session.get(DiscussionEvent, comment_id.lower())
    if event is None or event.discussion_id != d.id or event.type != "comment":
        raise DiscussionNotFoundError(f"Comment {comment_id} not found in discussion #{d.num}")
    return event


def edit_comment(
    session: Session, principal: Principal | None, repo_type: str, repo_id: str, num: int, comment_id: str, content: Any
) -> DiscussionEvent:
    """Replace the text of a comment: its author only, and not once hidden."""
    repo, d = find_discussion(session, principal, repo_type=repo_type, repo_id=repo_id, num=num)
    who = require_participant(session, principal, repo)
    event = _comment_of(session, d, comment_id)
    if event.author != who.name:
        raise ForbiddenError("only its author may edit a comment")
    if event.hidden:
        raise BadRequestError("a hidden comment cannot be edited")
    if not isinstance(content, str) or not content.strip():
        raise BadRequestError("a comment needs some text")
    event.content, event.edits = content, event.edits + 1
    return event


def hide_comment(
    session: Session, principal: Principal | None, repo_type: str, repo_id: str, num: int, comment_id: str
) -> DiscussionEvent:
    """Hide a comment for good (its text is dropped): the repo's writers only."""
    repo, d = find_discussion(session, principal, repo_type=repo_type, repo_id=repo_id, num=num)
    who = require_participant(session, principal, repo)
    if not may_moderate(who, repo):
        raise ForbiddenError("only a writer of the repo may hide comments")
    event = _comment_of(session, d, comment_id)
    event.hidden, event.content = True, ""
    return event


def rename(
    session: Session, principal: Principal | None, repo_type: str, repo_id: str, num: int, title: Any
) -> DiscussionEvent:
    """Rename discussion ``num``: its author or a writer of the repo."""
    repo, d = find_discussion(session, principal, repo_type=repo_type, repo_id=repo_id, num=num)
    who = require_participant(session, principal, repo)
    _author_or_moderator(who, repo, d.author, "rename a discussion")
    new = check_title(title)
    old, d.title = d.title, new
    return add_event(session, d, "title-change", who.name, new, old)


def change_status(
    session: Session, principal: Principal | None, repo_type: str, repo_id: str, num: int, status: Any, text: Any = None
) -> DiscussionEvent:
    """Close or reopen discussion ``num`` (its author or a writer), with an optional comment first."""
    repo, d = find_discussion(session, principal, repo_type=repo_type, repo_id=repo_id, num=num)
    who = require_participant(session, principal, repo)
    if status not in ("open", "closed"):
        raise BadRequestError("status must be 'open' or 'closed'")
    _author_or_moderator(who, repo, d.author, "close or reopen a discussion")
    if d.status == "merged":
        raise BadRequestError(f"pull request #{d.num} is merged: its status cannot change")
    if isinstance(text, str) and text.strip():
        add_event(session, d, "comment", who.name, text.strip())
    d.status = status
    return add_event(session, d, "status-change", who.name, status)


def webhook_fields(d: Discussion, repo: Repo, event: DiscussionEvent | None, *, base_url: str) -> dict[str, Any]:
    """The ``discussion`` (and ``comment``, for a comment's event) fields of a webhook payload, as the Hub's."""
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo.type]
    repo_id = f"{repo.owner.name}/{repo.name}"
    web = f"{base_url}/{prefix}{repo_id}/discussions/{d.num}"
    out: dict[str, Any] = {
        "discussion": {
            "id": str(d.id),
            "num": d.num,
            "title": d.title,
            "status": d.status,
            "isPullRequest": d.is_pull_request,
            "author": {"id": d.author},
            "url": {"web": web, "api": f"{base_url}/api/{repo.type}s/{repo_id}/discussions/{d.num}"},
        }
    }
    if d.is_pull_request:
        out["discussion"]["changes"] = {"base": f"refs/heads/{d.target_branch}"}
    if event is not None and event.type == "comment":
        out["comment"] = {
            "id": event.id,
            "author": {"id": event.author},
            "hidden": event.hidden,
            "content": "" if event.hidden else event.content,
            "url": {"web": f"{web}#{event.id}"},
        }
    return out
