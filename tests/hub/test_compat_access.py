"""Users, organisations, token roles and visibility, as the Hub API answers them: private repos are invisible (the
same 404 ``RepoNotFound`` as a missing repo) to anonymous callers and to other users, visible to org members and
admins; writing needs a write token of the owner, of an org member with the write or admin role, or of an admin."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hub.conftest import People
from tests.hubtools import HubProcess

REPOS = ("alice/private", "alice/public", "lab/secret", "lab/open")


def _http(hub: HubProcess, token: str | None) -> httpx.Client:
    return httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {token}"} if token else {}, timeout=30)


def _commit(client: httpx.Client, repo: str, path: str, data: bytes = b"x") -> httpx.Response:
    content = base64.b64encode(data).decode()
    lines = [{"key": "header", "value": {"summary": f"add {path}"}},
             {"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}}]  # fmt: skip
    body = "\n".join(json.dumps(line) for line in lines)
    return client.post(f"/api/models/{repo}/commit/main", content=body)


@pytest.fixture(scope="module")
def world(hub: HubProcess, people: People) -> Iterator[dict[str, httpx.Client]]:
    """HTTP clients of each caller, and the four repos of :data:`REPOS`, each holding ``config.json``."""
    clients = {name: _http(hub, getattr(people, name)) for name in ("admin", "alice", "alice_read", "bob", "wendy",
                                                                  "olga")}  # fmt: skip
    clients["anonymous"] = _http(hub, None)
    for repo in REPOS:
        owner, name = repo.split("/")
        private = name in ("private", "secret")
        body = {"name": name, "organization": owner if owner == "lab" else None, "private": private}
        assert clients["alice"].post("/api/repos/create", json=body).status_code == 200
        assert _commit(clients["alice"], repo, "config.json", b"{}").status_code == 200
    yield clients
    for client in clients.values():
        client.close()


# who → the repos of REPOS it may see
SEES = {
    "anonymous": {"alice/public", "lab/open"},
    "bob": {"alice/public", "lab/open"},
    "olga": {"alice/public", "lab/open", "lab/secret"},
    "wendy": {"alice/public", "lab/open", "lab/secret"},
    "alice_read": set(REPOS),
    "alice": set(REPOS),
    "admin": set(REPOS),
}
# who → the repos of REPOS it may write to
WRITES = {
    "anonymous": set(),
    "bob": set(),
    "olga": set(),
    "wendy": {"lab/secret", "lab/open"},
    "alice_read": set(),
    "alice": set(REPOS),
    "admin": set(REPOS),
}


@pytest.mark.parametrize("who", list(SEES))
def test_visibility(world: dict[str, httpx.Client], who: str) -> None:
    client = world[who]
    missing = world["admin"].get("/api/models/alice/no-such-repo")
    for repo in REPOS:
        answers = [client.get(f"/api/models/{repo}"), client.get(f"/api/models/{repo}/tree/main"),
                   client.get(f"/{repo}/resolve/main/config.json"), client.get(f"/api/models/{repo}/refs"),
                   client.get(f"/api/models/{repo}/commits/main")]  # fmt: skip
        for r in answers:
            if repo in SEES[who]:
                assert r.status_code == 200, (who, repo, r.request.url, r.text)
            else:  # exactly what a missing repo gets, so that existence does not leak
                assert (r.status_code, r.headers.get("x-error-code")) == (404, "RepoNotFound"), (who, repo, r.text)
                assert r.json()["error"].replace(repo, "alice/no-such-repo") == missing.json()["error"]
    listed = {m["id"] for owner in ("alice", "lab") for m in client.get("/api/models", params={"author": owner}).json()}
    assert listed == SEES[who]
    found = {m["id"] for m in client.get("/api/models", params={"search": "secret"}).json()}
    assert found == SEES[who] & {"lab/secret"}


@pytest.mark.parametrize("who", list(WRITES))
def test_write_permissions(world: dict[str, httpx.Client], who: str, unique: str) -> None:
    client = world[who]
    for repo in REPOS:
        r = _commit(client, repo, f"{who}-{unique}.txt")
        if repo in WRITES[who]:
            assert r.status_code == 200, (who, repo, r.text)
        elif who == "anonymous":
            assert (r.status_code, r.headers["x-error-code"]) == (401, "Unauthorized"), r.text
        elif repo in SEES[who]:  # may read, may not write
            assert (r.status_code, r.headers["x-error-code"]) == (403, "Forbidden"), (who, repo, r.text)
            assert "read-only" in r.json()["error"] if who == "alice_read" else "write access" in r.json()["error"]
        else:
            assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound"), (who, repo, r.text)
        batch = {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}], "ref": {"name": "main"}}
        for attempt in (client.post(f"/api/models/{repo}/branch/b-{unique}"),
                        client.post(f"/api/models/{repo}/preupload/main", json={"files": []}),
                        client.post(f"/{repo}.git/info/lfs/objects/batch", json=batch)):  # fmt: skip
            assert (attempt.status_code == 200) == (repo in WRITES[who]), (who, repo, attempt.request.url, attempt.text)


@pytest.mark.parametrize(("who", "owner", "allowed"), [
    ("alice", None, True), ("alice", "lab", True), ("wendy", "lab", True), ("olga", "lab", False),
    ("bob", "lab", False), ("bob", "alice", False), ("alice_read", None, False), ("admin", "bob", True),
])  # fmt: skip
def test_create_permissions(world: dict[str, httpx.Client], who: str, owner: str | None, allowed: bool,
                            unique: str) -> None:  # fmt: skip
    r = world[who].post("/api/repos/create", json={"name": unique, "organization": owner})
    assert r.status_code == (200 if allowed else 403), r.text
    if not allowed:
        assert r.headers["x-error-code"] == "Forbidden"


def test_whoami_and_token_roles(hub: HubProcess, people: People) -> None:
    me = HfApi(endpoint=hub.url, token=people.alice).whoami()
    assert me["name"] == "alice" and [o["name"] for o in me["orgs"]] == ["lab"]
    assert me["auth"]["accessToken"]["role"] == "write"
    assert HfApi(endpoint=hub.url, token=people.alice_read).whoami()["auth"]["accessToken"]["role"] == "read"
    r = httpx.get(f"{hub.url}/api/models/alice/public", headers={"authorization": "Bearer oc_not_a_token"})
    assert (r.status_code, r.headers["x-error-code"]) == (401, "Unauthorized"), "a bad token is never anonymous"


def test_clients_and_visibility_changes(
    hub: HubProcess, world: dict[str, httpx.Client], people: People, unique: str, tmp_path: Path
) -> None:
    """The client's view: the owner reads a private repo, a read token cannot write, others see nothing until the
    repo is made public."""
    owner, reader = HfApi(endpoint=hub.url, token=people.alice), HfApi(endpoint=hub.url, token=people.alice_read)
    repo = f"alice/{unique}"
    owner.create_repo(repo, private=True)
    owner.upload_file(path_or_fileobj=b"w", path_in_repo="w.txt", repo_id=repo)
    assert owner.model_info(repo).private is True and reader.model_info(repo).private is True
    with pytest.raises(HfHubHTTPError) as refused:
        reader.upload_file(path_or_fileobj=b"r", path_in_repo="r.txt", repo_id=repo)
    assert refused.value.response.status_code == 403
    for token in (people.bob, False):
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=hub.url, token=token).model_info(repo)
    assert HfApi(endpoint=hub.url, token=people.wendy).repo_exists(repo) is False
    owner.auth_check(repo)
    reader.auth_check(repo)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=people.bob).auth_check(repo)
    assert HfApi(endpoint=hub.url, token=people.admin).model_info(repo).private is True

    owner.update_repo_settings(repo, private=False)
    assert HfApi(endpoint=hub.url, token=False).model_info(repo).private is False
    got = hf_hub_download(repo, "w.txt", endpoint=hub.url, token=False, cache_dir=tmp_path)
    assert Path(got).read_bytes() == b"w"
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=hub.url, token=people.bob).update_repo_settings(repo, private=True)
    assert refused.value.response.status_code == 403
    owner.update_repo_settings(repo, private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info(repo)
