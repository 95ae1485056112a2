"""Webhook deliveries are written in the change's own transaction: once the API has answered a settings change, a
deletion, a pull request opened by ``create_pr``, a comment, a merge or an LFS purge, its delivery is in the outbox
already (the receiver here accepts connections and never answers, so nothing is sent and deleted meanwhile); a
refused change writes none. SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError
from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import WebhookOutbox
from tests.hub.test_webhooks import LOCAL
from tests.hubtools import HubProcess, Postgres, start_hub


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(tmp_path_factory.mktemp("hub") / "data", url, env=LOCAL)
    yield server
    server.stop()


@pytest.fixture
def silent() -> Iterator[str]:
    """The URL of a server that accepts connections and never answers: deliveries to it stay in the outbox."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.close()


def outbox(hub: HubProcess, repo_id: str) -> list[tuple[str, str]]:
    """(scope, action) of the deliveries waiting in the outbox for ``repo_id``, oldest first."""
    db = Database(hub.database_url)
    try:
        with db.read() as session:
            rows: list[dict[str, Any]] = list(session.scalars(select(WebhookOutbox.payload).order_by(WebhookOutbox.id)))
    finally:
        db.dispose()
    return [(p["event"]["scope"], p["event"]["action"]) for p in rows if p["repo"]["name"] == repo_id]


def test_deliveries_are_durable_when_the_api_answers(hub: HubProcess, silent: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    owner, other = f"tina{suffix}", f"ugo{suffix}"
    api, stranger = (
        HfApi(endpoint=hub.url, token=hub.create_user(owner)),
        HfApi(endpoint=hub.url, token=hub.create_user(other)),
    )
    repo_id = f"{owner}/m"
    api.create_repo(repo_id)
    api.create_webhook(url=silent, watched=[{"type": "user", "name": owner}], domains=["repo", "discussion"])

    api.update_repo_settings(repo_id, private=True)
    assert outbox(hub, repo_id) == [("repo.config", "update")]
    with pytest.raises(HfHubHTTPError):
        stranger.update_repo_settings(repo_id, private=False)  # refused: writes nothing
    assert outbox(hub, repo_id) == [("repo.config", "update")]
    api.update_repo_settings(repo_id, private=False)

    pr = api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a\n")], commit_message="a", create_pr=True)
    assert outbox(hub, repo_id)[-1] == ("discussion", "create")
    api.comment_discussion(repo_id, pr.pr_num, "ok")  # type: ignore[arg-type]
    assert outbox(hub, repo_id)[-1] == ("discussion.comment", "create")
    api.merge_pull_request(repo_id, pr.pr_num)  # type: ignore[arg-type]
    assert outbox(hub, repo_id)[-2:] == [("repo.content", "update"), ("discussion", "update")]

    api.upload_file(path_or_fileobj=b"\0" * 2048, path_in_repo="w.bin", repo_id=repo_id)
    before = len(outbox(hub, repo_id))
    sha = next(f.file_oid for f in api.list_lfs_files(repo_id))
    api.permanently_delete_lfs_files(repo_id, [f for f in api.list_lfs_files(repo_id) if f.file_oid == sha])
    assert outbox(hub, repo_id)[before:] == [("repo.content", "update")]

    api.delete_repo(repo_id)
    assert outbox(hub, repo_id)[-1] == ("repo", "delete")


def test_settings_page_changes_are_durable_when_it_answers(hub: HubProcess, silent: str) -> None:
    from tests.hub.test_ui_owner import Visitor

    owner = f"vera{uuid.uuid4().hex[:6]}"
    token = hub.create_user(owner)
    api, repo_id = HfApi(endpoint=hub.url, token=token), f"{owner}/m"
    api.create_repo(repo_id)
    api.create_webhook(url=silent, watched=[{"type": "user", "name": owner}], domains=["repo"])
    vera = Visitor(hub.url)
    vera.login(token)
    settings = f"/{repo_id}/settings"
    assert vera.post(settings, settings, {"action": "visibility", "visibility": "private"}).status_code == 200
    assert outbox(hub, repo_id) == [("repo.config", "update")]
    assert vera.post(settings, settings, {"action": "gating", "gated": "auto"}).status_code == 200
    assert vera.post(settings, settings, {"action": "gating", "gated": "bogus-but-off"}).status_code == 200
    assert outbox(hub, repo_id) == [("repo.config", "update")] * 3
    assert vera.post(settings, settings, {"action": "delete", "confirm": repo_id}).status_code == 200
    assert outbox(hub, repo_id)[-1] == ("repo", "delete")


def test_repo_and_ref_changes_are_durable_when_the_api_answers(hub: HubProcess, silent: str) -> None:
    owner = f"wanda{uuid.uuid4().hex[:6]}"
    api = HfApi(endpoint=hub.url, token=hub.create_user(owner))
    api.create_webhook(url=silent, watched=[{"type": "user", "name": owner}], domains=["repo"])
    repo_id, moved_id, copy_id = f"{owner}/m", f"{owner}/moved", f"{owner}/copy"

    api.create_repo(repo_id)
    assert outbox(hub, repo_id) == [("repo", "create")]
    api.create_branch(repo_id, branch="dev")
    api.create_tag(repo_id, tag="v1")
    api.delete_branch(repo_id, branch="dev")
    api.delete_tag(repo_id, tag="v1")
    assert outbox(hub, repo_id)[1:] == [("repo.content", "update")] * 4
    with pytest.raises(HfHubHTTPError):
        api.delete_branch(repo_id, branch="nope")  # refused: writes nothing
    assert len(outbox(hub, repo_id)) == 5

    api.move_repo(repo_id, moved_id)
    assert outbox(hub, repo_id)[-1] == ("repo", "move")  # the Hub's move payload names the repo as it was
    api.duplicate_repo(moved_id, copy_id)
    assert outbox(hub, copy_id) == [("repo", "create")]
