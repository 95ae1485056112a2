"""The commit flow in-process, on a real hub's database and store (SQLite and PostgreSQL): a refused commit leaves
nothing behind, a ``create_pr`` commit opens its pull request in the commit's own transaction, a branch's event is
written in the transaction that moves it, and files the request brings need no other proof of possession."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from openckpt.errors import PreconditionFailedError, UnsafeUploadError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Discussion, DiscussionEvent, Ref, Repo, WebhookOutbox
from openckpt.hub.services import commit_flow, repos
from openckpt.hub.services.accounts import Principal, authenticate
from openckpt.hub.services.commit_flow import CommitRequest, NewFile
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.sealed import sealing_key
from openckpt.hub.services.stored_files import XetFileStore
from openckpt.hub.services.trees import read_tree
from openckpt.hub.services.webhooks import registry as webhooks
from openckpt.hub.services.webhooks.delivery import Deliveries, Event
from openckpt.hub.settings import Settings
from openckpt.store.url import open_store
from tests.hub.conftest import People
from tests.hubtools import HubProcess

MALICIOUS = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R."  # GLOBAL os.system, REDUCE: never loaded


@dataclass
class Hub:
    db: Database
    store: XetFileStore
    settings: Settings
    alice: Principal


class Held(Deliveries):
    """Deliveries whose workers never start (rows stay in the outbox), noting what each event's transaction saw."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, "http://hub.test", key=b"k" * 32)
        self.heads: list[str | None] = []

    def enqueue(self, session: Session, event: Event) -> int:
        ref = session.get(Ref, (event.repo.id, "branch", "main"))
        self.heads.append(ref.commit_id if ref is not None else None)
        return super().enqueue(session, event)

    def wake(self) -> None:
        pass


@pytest.fixture
def parts(hub: HubProcess, people: People) -> Iterator[Hub]:
    settings = Settings(data_dir=hub.data_dir, database_url=hub.database_url, secret=hub.secret(), xet_ingest=False)
    db = Database(hub.database_url)
    try:
        with db.read() as session:
            alice = authenticate(session, people.alice)
        yield Hub(db, XetFileStore(open_store(settings.storage_url, settings.data_dir), db), settings, alice)
    finally:
        db.dispose()


def _repo(hub: HubProcess, people: People, name: str, parts: Hub) -> int:
    headers = {"authorization": f"Bearer {people.alice}"}
    assert httpx.post(f"{hub.url}/api/repos/create", json={"name": name}, headers=headers).status_code == 200
    with parts.db.read() as session:
        return repos.find_repo(session, parts.alice, repo_type="model", repo_id=f"alice/{name}").id


def _head(parts: Hub, repo_id: int, ref: str = "main", kind: str = "branch") -> str | None:
    with parts.db.read() as session:
        row = session.get(Ref, (repo_id, kind, ref))
        return row.commit_id if row is not None else None


def test_a_refused_commit_leaves_nothing_visible(hub: HubProcess, people: People, unique: str, parts: Hub) -> None:
    repo_id = _repo(hub, people, unique, parts)
    before = _head(parts, repo_id)
    request = CommitRequest(
        principal=parts.alice,
        repo_id=repo_id,
        revision="main",
        changes=[NewFile("README.md", b"# hi\n"), NewFile("model.bin", MALICIOUS)],
        title="add a model",
        create_pr=True,
    )
    with pytest.raises(UnsafeUploadError, match=r"model\.bin"):
        commit_flow.commit(parts.db, parts.store, settings=parts.settings, request=request)
    assert _head(parts, repo_id) == before
    with parts.db.read() as session:  # the pull request it would have opened does not exist, nor its ref
        assert session.scalars(select(Discussion).where(Discussion.repo_id == repo_id)).all() == []
        assert session.scalars(select(Ref).where(Ref.repo_id == repo_id, Ref.kind == "pr")).all() == []


def test_create_pr_opens_the_pull_request_with_its_commit(
    hub: HubProcess, people: People, unique: str, parts: Hub
) -> None:
    repo_id = _repo(hub, people, unique, parts)
    main = _head(parts, repo_id)
    seen: list[tuple[int, str, str | None]] = []

    def hook(session: Session, d: Discussion, event: DiscussionEvent) -> None:
        ref = session.get(Ref, (repo_id, "pr", f"refs/pr/{d.num}"))
        seen.append((d.num, event.type, ref.commit_id if ref is not None else None))

    request = CommitRequest(
        principal=parts.alice,
        repo_id=repo_id,
        revision="main",
        changes=[NewFile("notes.txt", b"a proposal\n")],
        title="Propose notes",
        message="Please merge",
        create_pr=True,
    )
    done = commit_flow.commit(parts.db, parts.store, settings=parts.settings, request=request, on_pr_commit=hook)
    assert (done.pull_request, done.ref, done.changed, done.old) == (1, "refs/pr/1", True, main)
    assert seen == [(1, "commit", done.commit_id)]  # in the transaction that moved the pull request's ref
    assert _head(parts, repo_id) == main
    assert _head(parts, repo_id, "refs/pr/1", "pr") == done.commit_id
    with parts.db.read() as session:
        d = session.scalars(select(Discussion).where(Discussion.repo_id == repo_id)).one()
        assert (d.num, d.status, d.title, d.target_branch, d.base_commit) == (1, "open", "Propose notes", "main", main)


def test_a_branch_event_is_written_with_the_ref_move(hub: HubProcess, people: People, unique: str, parts: Hub) -> None:
    repo_id = _repo(hub, people, unique, parts)
    key = sealing_key(parts.settings.secret)
    body = {"url": "http://127.0.0.1:9/hook", "watched": [{"type": "model", "name": f"alice/{unique}"}]}
    hook = webhooks.create_webhook(parts.db, parts.alice, body=body, allow_local=True, key=key)
    events = Held(parts.db)
    try:
        old = _head(parts, repo_id)
        request = CommitRequest(
            principal=parts.alice, repo_id=repo_id, revision="main", changes=[NewFile("a.txt", b"a\n")], title="a"
        )
        done = commit_flow.commit(parts.db, parts.store, settings=parts.settings, request=request, events=events)
        assert events.heads == [done.commit_id]  # the transaction writing the event had moved main already
        stale = CommitRequest(
            principal=parts.alice,
            repo_id=repo_id,
            revision="main",
            changes=[NewFile("b.txt", b"b\n")],
            title="b",
            parent_commit=old,
        )
        with pytest.raises(PreconditionFailedError):
            commit_flow.commit(parts.db, parts.store, settings=parts.settings, request=stale, events=events)
        with parts.db.read() as session:
            rows = session.scalars(select(WebhookOutbox).where(WebhookOutbox.webhook_id == hook["id"])).all()
            payloads = [r.payload for r in rows]
        assert len(payloads) == 1  # the refused commit wrote none
        assert payloads[0]["updatedRefs"] == [{"ref": "refs/heads/main", "oldSha": old, "newSha": done.commit_id}]
    finally:
        webhooks.delete_webhook(parts.db, parts.alice, webhook_id=hook["id"])


def test_files_the_request_brings_need_no_other_proof(hub: HubProcess, people: People, unique: str, parts: Hub) -> None:
    repo_id = _repo(hub, people, unique, parts)
    weights = bytes(range(256)) * 64  # binary: stored as LFS by the preupload rule
    request = CommitRequest(
        principal=parts.alice,
        repo_id=repo_id,
        revision="main",
        changes=[NewFile("w.bin", io.BytesIO(weights)), NewFile("text.txt", b"plain\n")],
        title="upload",
    )
    done = commit_flow.commit(parts.db, parts.store, settings=parts.settings, request=request)
    with parts.db.read() as session:
        repo = session.get(Repo, repo_id)
        assert repo is not None
        head = resolve_revision(session, repo, rev="main")
        files = read_tree(session, head.tree_id)
    assert head.id == done.commit_id
    assert (files["w.bin"].lfs, files["w.bin"].size, files["text.txt"].lfs) == (True, len(weights), False)
