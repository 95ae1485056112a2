"""The webhook outbox with a real hub process: deliveries written with their commit survive a SIGKILL of the server
(sent after the restart, in order per webhook, at least once with one ``X-Webhook-Delivery`` id each), and a commit
that does not happen (refused by the gate, or on a stale parent, through the API or the web form) enqueues nothing."""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from sqlalchemy import func, select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import WebhookOutbox
from tests.hub.test_gate import MALICIOUS
from tests.hub.test_ui_owner import Visitor
from tests.hub.test_webhooks import LOCAL, Received, Receiver
from tests.hubtools import Postgres, free_port, start_hub


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A new hub database on PostgreSQL, or "" for the data dir's SQLite file."""
    if request.param == "sqlite":
        return ""
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")


def _to(path: str, received: Received) -> bool:
    return received.path == path


def _pending(database_url: str) -> int:
    db = Database(database_url)
    try:
        with db.read() as session:
            return session.scalar(select(func.count()).select_from(WebhookOutbox)) or 0
    finally:
        db.dispose()


def test_deliveries_pending_at_a_sigkill_arrive_after_the_restart(tmp_path: Path, database_url: str) -> None:
    port = free_port()  # the receiver is down: nothing listens there yet
    hub = start_hub(tmp_path / "data", database_url, env=LOCAL)
    try:
        api = HfApi(endpoint=hub.url, token=hub.create_user("alice"))
        repo = api.create_repo("alice/outbox").repo_id
        watched: list[Any] = [{"type": "model", "name": repo}]
        hooks = {p: api.create_webhook(url=f"http://127.0.0.1:{port}{p}", watched=watched).id for p in ("/1", "/2")}
        commits = [
            api.upload_file(path_or_fileobj=b"%d" % n, path_in_repo=f"{n}.txt", repo_id=repo).oid for n in range(3)
        ]
    finally:
        assert hub.process is not None
        hub.process.kill()  # SIGKILL: no shutdown of any kind
        hub.process.wait()
    assert _pending(hub.database_url) == len(commits) * len(hooks)

    receiver = Receiver(port)
    again = start_hub(tmp_path / "data", database_url, env=LOCAL)
    try:
        for path, hook in hooks.items():
            got = receiver.wait_for(partial(_to, path), count=len(commits), timeout=300)
            once: dict[str, Received] = {}
            for r in got:  # at least once: a repeat carries the id and the body of the first
                assert once.setdefault(r.headers["x-webhook-delivery"], r).body == r.body
            ids = list(once)
            assert ids == sorted(ids, key=int)  # in the order of the commits
            assert [once[i].body["repo"]["headSha"] for i in ids] == commits
            assert {once[i].body["webhook"]["id"] for i in ids} == {hook}
    finally:
        again.stop()
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_commit_that_does_not_happen_fires_no_webhook(tmp_path: Path, database_url: str) -> None:
    receiver = Receiver()
    hub = start_hub(tmp_path / "data", database_url, env=LOCAL)
    try:
        api = HfApi(endpoint=hub.url, token=hub.create_user("alice"))
        repo = api.create_repo("alice/refused").repo_id
        api.create_webhook(url=receiver.url(), watched=[{"type": "model", "name": repo}])
        head = api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=repo).oid
        with pytest.raises(HfHubHTTPError) as refused:  # the gate refuses it
            api.upload_file(path_or_fileobj=MALICIOUS, path_in_repo="model.bin", repo_id=repo)
        assert refused.value.response.status_code == 400
        good = api.upload_file(path_or_fileobj=b"b", path_in_repo="b.txt", repo_id=repo).oid
        with pytest.raises(HfHubHTTPError):  # its transaction rolls back: the branch moved since
            api.upload_file(path_or_fileobj=b"c", path_in_repo="c.txt", repo_id=repo, parent_commit=head)
        last = api.upload_file(path_or_fileobj=b"d", path_in_repo="d.txt", repo_id=repo).oid
        # one webhook's deliveries arrive in order: once the last commit's has, any of a refused one would have too
        got = receiver.wait_for(lambda r: r.body["repo"].get("headSha") == last)
        shas = [r.body["repo"]["headSha"] for r in receiver.requests]
        assert [s for i, s in enumerate(shas) if s not in shas[:i]] == [head, good, last]
        assert got
    finally:
        hub.stop()
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_web_edit_fires_its_webhook_and_a_stale_one_none(tmp_path: Path, database_url: str) -> None:
    receiver = Receiver()
    hub = start_hub(tmp_path / "data", database_url, env=LOCAL)
    try:
        api = HfApi(endpoint=hub.url, token=hub.token)
        repo = api.create_repo("admin/web").repo_id
        api.create_webhook(url=receiver.url(), watched=[{"type": "model", "name": repo}])
        head = api.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=repo).oid
        admin = Visitor(hub.url)
        admin.login(hub.token)
        page = f"/{repo}/edit/main/a.txt"
        form = {"csrf": admin.csrf(page, page), "parent": head, "path": "a.txt", "content": "b"}
        assert admin.http.post(page, data=form).status_code == 200
        stale = admin.http.post(page, data={**form, "content": "c"})  # its transaction rolls back
        assert stale.status_code == 412
        edited = api.repo_info(repo).sha
        last = api.upload_file(path_or_fileobj=b"d", path_in_repo="d.txt", repo_id=repo).oid
        receiver.wait_for(lambda r: r.body["repo"].get("headSha") == last)
        shas = [r.body["repo"]["headSha"] for r in receiver.requests]
        assert [s for i, s in enumerate(shas) if s not in shas[:i]] == [head, edited, last]
    finally:
        hub.stop()
        receiver.server.shutdown()
        receiver.server.server_close()
