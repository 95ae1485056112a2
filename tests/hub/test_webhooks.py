"""Webhooks through the stock client (``HfApi.create_webhook`` and the rest, ``hf webhooks``), and their deliveries
to a real receiver on 127.0.0.1 (this module's hubs run with ``OPENCKPT_WEBHOOKS_ALLOW_LOCAL=1``): the Hub's payload
and secret header, who hears of what, retries, and that a receiver never holds up the change that caused the
delivery. By default the hub's own network is out of reach."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from openckpt.hub.services.webhooks.delivery import Deliveries, _Delivery, local_target
from tests.hub.conftest import People, client_env, run_checked
from tests.hubtools import HubProcess, Postgres, start_hub

LOCAL = {"OPENCKPT_WEBHOOKS_ALLOW_LOCAL": "1"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """As the shared ``hub`` fixture, with webhooks allowed to reach the receivers on 127.0.0.1."""
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(tmp_path_factory.mktemp("hub") / "data", url, env=LOCAL)
    yield server
    server.stop()


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    """A threaded HTTP server recording the POSTs it gets; it answers the ``statuses`` given, in turn, then 200."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with receiver._lock:
                    receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body))  # fmt: skip
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def matching(self, predicate: Callable[[Received], bool]) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if predicate(r)]

    def wait_for(self, predicate: Callable[[Received], bool], count: int = 1, timeout: float = 60) -> list[Received]:
        """Poll (bounded) until ``count`` requests match ``predicate``; those requests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.matching(predicate)) >= count:
                return found
            time.sleep(0.05)
        pytest.fail(f"no {count} matching webhook deliveries within {timeout}s; got {self.requests}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _api(hub: HubProcess, token: str) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _status(error: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert error.value.response is not None
    return error.value.response.status_code


def _of(repo: str, path: str | None = None, scope: str | None = None) -> Callable[[Received], bool]:
    return lambda r: (r.body["repo"]["name"] == repo and (path is None or r.path == path)
                      and (scope is None or r.body["event"]["scope"] == scope))  # fmt: skip


def test_crud_through_the_client(hub: HubProcess, people: People, receiver: Receiver, unique: str) -> None:
    alice = _api(hub, people.alice)
    made = alice.create_webhook(url=receiver.url(), watched=[{"type": "model", "name": f"alice/{unique}"}],
                                domains=["repo"], secret="s3cret")  # fmt: skip
    assert len(made.id) == 24 and int(made.id, 16) >= 0
    assert (made.url, made.domains, made.secret, made.disabled) == (receiver.url(), ["repo"], "s3cret", False)
    assert [(w.type, w.name) for w in made.watched] == [("model", f"alice/{unique}")]
    assert made.id in [w.id for w in alice.list_webhooks()]
    assert _api(hub, people.alice_read).get_webhook(made.id) == made  # a read token lists and gets its own
    assert made.id in [w.id for w in _api(hub, people.alice_read).list_webhooks()]

    changed = alice.update_webhook(made.id, url=receiver.url("/new"), watched=[{"type": "user", "name": "alice"}],
                                   domains=["repo", "discussion"])  # fmt: skip
    assert (changed.url, changed.domains, changed.secret) == (receiver.url("/new"), ["repo", "discussion"], "s3cret")
    assert [(w.type, w.name) for w in changed.watched] == [("user", "alice")]
    assert alice.disable_webhook(made.id).disabled is True
    assert alice.get_webhook(made.id).disabled is True
    assert alice.enable_webhook(made.id).disabled is False

    bob = _api(hub, people.bob)
    assert made.id not in [w.id for w in bob.list_webhooks()]
    with pytest.raises(HfHubHTTPError) as error:
        bob.get_webhook(made.id)
    assert _status(error) == 404
    with pytest.raises(HfHubHTTPError) as error:
        bob.delete_webhook(made.id)
    assert _status(error) == 404
    with pytest.raises(HfHubHTTPError) as error:
        _api(hub, people.alice_read).disable_webhook(made.id)
    assert _status(error) == 403

    alice.delete_webhook(made.id)
    with pytest.raises(HfHubHTTPError) as error:
        alice.get_webhook(made.id)
    assert _status(error) == 404


def test_read_token_cannot_create_and_bad_input_is_a_400(hub: HubProcess, people: People, receiver: Receiver) -> None:
    watched = [{"type": "user", "name": "alice"}]
    with pytest.raises(HfHubHTTPError) as error:
        _api(hub, people.alice_read).create_webhook(url=receiver.url(), watched=watched)
    assert _status(error) == 403
    alice = _api(hub, people.alice)
    for url, items in [("ftp://127.0.0.1/x", watched), ("not a url", watched), (receiver.url(), []),
                       (receiver.url(), [{"type": "repo", "name": "alice/x"}]),
                       (receiver.url(), [{"type": "model", "name": "no-slash"}]),
                       (receiver.url(), [{"type": "org", "name": "no-such-org"}])]:  # fmt: skip
        with pytest.raises(HfHubHTTPError) as error:
            alice.create_webhook(url=url, watched=items)
        assert _status(error) == 400, (url, items)
    with pytest.raises(HfHubHTTPError) as error:
        alice.create_webhook(url=receiver.url(), watched=watched, domains=["everything"])  # type: ignore[list-item]
    assert _status(error) == 400


def test_a_commit_is_delivered_with_the_hub_payload(
    hub: HubProcess, people: People, receiver: Receiver, unique: str
) -> None:
    alice = _api(hub, people.alice)
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    before = alice.repo_info(repo).sha
    hook = alice.create_webhook(url=receiver.url(), watched=[{"type": "model", "name": repo}], secret="s3cret")
    commit = alice.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id=repo)

    (got,) = receiver.wait_for(_of(repo))
    assert got.headers["x-webhook-secret"] == "s3cret"
    assert got.headers["content-type"] == "application/json"
    body = got.body
    assert body["event"] == {"action": "update", "scope": "repo.content"}
    assert body["webhook"] == {"id": hook.id, "version": 3}
    assert {k: body["repo"][k] for k in ("type", "name", "private", "headSha")} == {
        "type": "model", "name": repo, "private": False, "headSha": commit.oid}  # fmt: skip
    assert body["repo"]["url"] == {"web": f"{hub.url}/{repo}", "api": f"{hub.url}/api/models/{repo}"}
    assert body["updatedRefs"] == [{"ref": "refs/heads/main", "oldSha": before, "newSha": commit.oid}]

    second = alice.upload_file(path_or_fileobj=b"2", path_in_repo="two.txt", repo_id=repo)
    receiver.wait_for(lambda r: r.body["repo"].get("headSha") == second.oid)
    assert len(receiver.matching(lambda r: r.body["repo"].get("headSha") == commit.oid)) == 1  # delivered once

    alice.create_branch(repo, branch="dev")
    (branch,) = receiver.wait_for(lambda r: r.body.get("updatedRefs", [{}])[0].get("ref") == "refs/heads/dev")
    assert branch.body["updatedRefs"] == [{"ref": "refs/heads/dev", "oldSha": None, "newSha": second.oid}]
    alice.update_repo_settings(repo, private=True)
    (config,) = receiver.wait_for(_of(repo, scope="repo.config"))
    assert config.body["updatedConfig"] == {"private": True} and config.body["repo"]["private"] is True
    alice.super_squash_history(repo)
    squashed = alice.repo_info(repo).sha
    (squash,) = receiver.wait_for(lambda r: r.body["repo"].get("headSha") == squashed)
    assert squash.body["updatedRefs"] == [{"ref": "refs/heads/main", "oldSha": second.oid, "newSha": squashed}]
    alice.delete_repo(repo)
    (gone,) = receiver.wait_for(lambda r: r.body["event"]["action"] == "delete" and _of(repo)(r))
    assert gone.body["event"]["scope"] == "repo"


def test_watching_an_org_catches_its_repos(hub: HubProcess, people: People, receiver: Receiver, unique: str) -> None:
    _api(hub, people.wendy).create_webhook(url=receiver.url(), watched=[{"type": "org", "name": people.org}])
    alice = _api(hub, people.alice)
    repo = f"{people.org}/{unique}"
    alice.create_repo(repo, repo_type="dataset")
    (created,) = receiver.wait_for(_of(repo))
    assert created.body["event"] == {"action": "create", "scope": "repo"}
    assert created.body["repo"]["type"] == "dataset"
    assert "x-webhook-secret" not in created.headers
    commit = alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo, repo_type="dataset")
    receiver.wait_for(lambda r: r.body["repo"].get("headSha") == commit.oid)
    alice.move_repo(repo, f"alice/{unique}", repo_type="dataset")
    (moved,) = receiver.wait_for(lambda r: r.body["event"]["action"] == "move" and _of(repo)(r))
    assert moved.body["movedTo"] == {"name": f"alice/{unique}", "owner": "alice"}


def test_a_private_repo_reaches_only_webhooks_of_its_readers(
    hub: HubProcess, people: People, receiver: Receiver, unique: str
) -> None:
    alice = _api(hub, people.alice)
    repo = f"alice/{unique}"
    alice.create_repo(repo, private=True)
    watched = [{"type": "model", "name": repo}]
    _api(hub, people.bob).create_webhook(url=receiver.url("/bob"), watched=watched)
    alice.create_webhook(url=receiver.url("/alice"), watched=watched)
    commit = alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    (got,) = receiver.wait_for(_of(repo, "/alice"))
    assert got.body["repo"]["headSha"] == commit.oid and got.body["repo"]["private"] is True

    alice.update_repo_settings(repo, private=False)  # now bob may read it: later events reach him
    receiver.wait_for(_of(repo, "/bob", scope="repo.config"))
    assert receiver.matching(_of(repo, "/bob", scope="repo.content")) == []


def test_disabled_webhooks_get_nothing(hub: HubProcess, people: People, receiver: Receiver, unique: str) -> None:
    alice = _api(hub, people.alice)
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    watched = [{"type": "model", "name": repo}]
    off = alice.create_webhook(url=receiver.url("/off"), watched=watched)
    alice.disable_webhook(off.id)
    alice.create_webhook(url=receiver.url("/on"), watched=watched)
    alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    receiver.wait_for(_of(repo, "/on"))
    assert receiver.matching(_of(repo, "/off")) == []


def test_a_failed_delivery_is_retried(hub: HubProcess, people: People, receiver: Receiver, unique: str) -> None:
    alice = _api(hub, people.alice)
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    alice.create_webhook(url=receiver.url(), watched=[{"type": "model", "name": repo}])
    receiver.statuses = [500]
    commit = alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
    first, second = receiver.wait_for(_of(repo), count=2)
    assert first.body == second.body and second.body["repo"]["headSha"] == commit.oid


def test_a_receiver_that_never_answers_does_not_hold_up_the_commit(
    hub: HubProcess, people: People, receiver: Receiver, unique: str
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the backlog; nothing ever reads or answers them
    try:
        alice = _api(hub, people.alice)
        repo = f"alice/{unique}"
        alice.create_repo(repo)
        watched = [{"type": "model", "name": repo}]
        alice.create_webhook(url=f"http://127.0.0.1:{silent.getsockname()[1]}/hook", watched=watched)
        alice.create_webhook(url=receiver.url(), watched=watched)
        commit = alice.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo)
        assert alice.repo_info(repo).sha == commit.oid
        receiver.wait_for(lambda r: r.body["repo"].get("headSha") == commit.oid)
    finally:
        silent.close()


def test_the_hf_cli_lists_webhooks(hub: HubProcess, people: People, receiver: Receiver, tmp_path: Path) -> None:
    hook = _api(hub, people.olga).create_webhook(url=receiver.url(), watched=[{"type": "org", "name": people.org}])
    hf = Path(sys.executable).with_name("hf")
    out = run_checked([str(hf), "webhooks", "list", "--format", "json"],
                      env=client_env(hub.url, tmp_path / "hf-home", HF_TOKEN=people.olga))  # fmt: skip
    listed = json.loads(out)
    assert [(w["id"], w["url"], w["disabled"], w["watched"]) for w in listed] == [
        (hook.id, receiver.url(), False, [f"org:{people.org}"])]  # fmt: skip


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/hook",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/hook",
                                 "http://[::ffff:127.0.0.1]/hook", "http://192.168.0.1/hook"])  # fmt: skip
def test_the_hubs_own_network_is_local(url: str) -> None:
    assert local_target(url) is not None


def test_a_public_address_is_not_local() -> None:
    assert local_target("http://8.8.8.8/hook") is None  # an address literal: no lookup, nothing sent


def test_by_default_webhooks_cannot_reach_the_hubs_own_network(tmp_path: Path, receiver: Receiver) -> None:
    guarded = start_hub(tmp_path / "data")  # without OPENCKPT_WEBHOOKS_ALLOW_LOCAL
    try:
        api = _api(guarded, guarded.token)
        repo = api.create_repo("guarded").repo_id
        for url in (receiver.url("/hook"), "http://localhost:9/hook", "http://169.254.169.254/latest"):
            with pytest.raises(HfHubHTTPError) as refused:
                api.create_webhook(url=url, watched=[{"type": "model", "name": repo}])
            assert _status(refused) == 400 and "OPENCKPT_WEBHOOKS_ALLOW_LOCAL" in str(refused.value)
    finally:
        guarded.stop()
    # a hook's url that resolves to the hub's network later (DNS changed) is checked again when it is sent
    deliveries = Deliveries(None, "http://hub", key=b"")  # type: ignore[arg-type]  # sending reads no database
    with httpx.Client() as client:
        deliveries._send(client, _Delivery(receiver.url("/late"), b"{}", None, "0" * 24))
    assert receiver.requests == []
