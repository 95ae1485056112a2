"""Bad input and concurrency on the write API: invalid paths, names and bodies are 400s with a message that says
what is wrong; a commit applies completely or not at all; concurrent commits never lose one another."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.hubtools import HubProcess


@pytest.fixture(scope="module")
def http(hub: HubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {hub.token}"}, timeout=120) as client:
        yield client


@pytest.fixture
def repo(http: httpx.Client, unique: str) -> str:
    assert http.post("/api/repos/create", json={"name": unique}).status_code == 200
    assert commit(http, f"admin/{unique}", add("keep.txt")).status_code == 200
    return f"admin/{unique}"


def add(path: str, data: bytes = b"x") -> dict[str, Any]:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


def commit(http: httpx.Client, repo: str, *ops: dict[str, Any], header: dict[str, Any] | None = None,
           raw: bytes | None = None, rev: str = "main") -> httpx.Response:  # fmt: skip
    lines = [{"key": "header", "value": header or {"summary": "test"}}, *ops]
    body = raw if raw is not None else "\n".join(json.dumps(line) for line in lines).encode()
    return http.post(f"/api/models/{repo}/commit/{rev}", content=body, headers={"content-type": "application/x-ndjson"})


def bad_request(r: httpx.Response, *words: str) -> None:
    assert (r.status_code, r.headers.get("x-error-code")) == (400, "BadRequest"), (r.request.url, r.text)
    message = r.json()["error"]
    assert all(w in message for w in words), message
    assert r.headers["x-error-message"], "the client shows X-Error-Message"


def head(http: httpx.Client, repo: str) -> str:
    sha: str = http.get(f"/api/models/{repo}").json()["sha"]
    return sha


BAD_PATHS = {
    "../etc/passwd": "'..'",
    "a/../../b": "'..'",
    "/etc/passwd": "relative",
    "a\0b": "NUL",
    "a\nb": "control",
    "x" * 1100: "longer than 1024",
    "./a": "'.'",
    "a//b": "empty",
    ".git/config": ".git",
    "a\\..\\b": "backslash",
}


@pytest.mark.parametrize("path", list(BAD_PATHS), ids=lambda p: repr(p[:12]))
def test_invalid_paths(http: httpx.Client, repo: str, path: str) -> None:
    before = head(http, repo)
    bad_request(commit(http, repo, add(path)), "invalid path", BAD_PATHS[path])
    bad_request(commit(http, repo, {"key": "deletedFile", "value": {"path": path}}), "invalid path")
    files = [{"path": path, "size": 1, "sample": ""}]
    bad_request(http.post(f"/api/models/{repo}/preupload/main", json={"files": files}), "invalid path")
    bad_request(http.post(f"/api/models/{repo}/paths-info/main", data={"paths": [path]}), "invalid path")
    if "\0" not in path and "\n" not in path:
        quoted = httpx.URL(f"/api/models/{repo}/tree/main/").path + path.replace("/", "%2F").replace("\\", "%5C")
        bad_request(http.get(quoted), "invalid path")
    assert head(http, repo) == before


@pytest.mark.parametrize("name", ["..", "a/b", "-x", "x-", "x.git", "a--b", "a" * 97, "", "ünï", "a b", "%2E%2E"])
def test_invalid_repo_names(http: httpx.Client, name: str) -> None:
    bad_request(http.post("/api/repos/create", json={"name": name}), "invalid", "name")
    bad_request(http.post("/api/repos/create", json={"name": "fine", "organization": name or ".."}), "invalid")
    if name and "/" not in name and name != "..":  # a literal '..' segment never reaches the server
        bad_request(http.get(f"/api/models/admin/{name.replace(' ', '%20')}"), "invalid repo name")


def test_invalid_bodies(http: httpx.Client, repo: str) -> None:
    bad_request(http.post("/api/repos/create", json=["not", "an", "object"]), "JSON object")
    bad_request(http.post("/api/repos/create", json={"name": 5}), "repo name")
    bad_request(http.post("/api/repos/create", json={"name": "x", "organization": 5}), "organization")
    bad_request(http.post(f"/api/models/{repo}/preupload/main", json={"files": "x"}), "files")
    bad_request(http.post(f"/api/models/{repo}/preupload/main", json={"files": [7]}), "path")
    bad_request(http.post(f"/api/models/{repo}/preupload/main", json={"files": [{"path": "a", "size": -1}]}), "size")
    bad_request(commit(http, repo, raw=b"{not json"), "line 1")
    bad_request(commit(http, repo, raw=b'{"key":"header","value":[1]}'), "JSON object")
    bad_request(commit(http, repo, {"key": "nonsense", "value": {}}), "unknown key")
    bad_request(commit(http, repo, raw=json.dumps(add("a.txt")).encode()), "header")
    bad_request(commit(http, repo, add("a.txt"), header={"summary": "s", "parentCommit": "main"}), "parentCommit")
    bad_request(commit(http, repo, {"key": "file", "value": {"path": "a.txt", "content": "***"}}), "base64")
    bad_request(commit(http, repo, {"key": "lfsFile", "value": {"path": "a.bin", "oid": "zz", "size": 1}}), "sha256")
    lfs = {"path": "a.bin", "algo": "sha256", "oid": "a" * 64, "size": -5}
    bad_request(commit(http, repo, {"key": "lfsFile", "value": lfs}), "size")
    bad_request(commit(http, repo, add("big.txt", b"x" * (10 * 2**20 + 1))), "LFS")
    bad_request(http.post(f"/api/models/{repo}/branch/a..b"), "invalid branch name")
    bad_request(http.post(f"/api/models/{repo}/tag/main", json={"tag": "has space"}), "invalid tag name")
    assert http.post(f"/api/models/{repo}/tag/main", json={"tag": "v1"}).status_code == 200
    bad_request(commit(http, repo, add("a.txt"), rev="v1"), "not a branch")
    r = commit(http, repo, add("a.txt"), rev="no-such-branch")
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RevisionNotFound")
    r = http.post(f"/api/models/{repo}/commit/main?create_pr=1", content=b"")  # a pull request needs a header too
    bad_request(r, "header")


def test_commit_is_atomic(http: httpx.Client, repo: str) -> None:
    """One valid and one invalid operation: nothing changes, and no commit is made."""
    before, log = head(http, repo), http.get(f"/api/models/{repo}/commits/main").json()
    missing_lfs = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "b" * 64, "size": 3}}
    for bad, status in [
        (add("../escape.txt"), 400),
        ({"key": "deletedFile", "value": {"path": "no-such-file.txt"}}, 404),
        ({"key": "deletedFolder", "value": {"path": "no-such-folder"}}, 404),
        (missing_lfs, 400),
        (add("keep.txt/below.txt"), 400),  # keep.txt is a file: it cannot be a folder too
        ({"key": "file", "value": {"path": "b.txt", "content": "!!"}}, 400),
    ]:
        r = commit(http, repo, add("valid.txt", b"new"), bad)
        assert r.status_code == status, (bad, r.text)
        assert head(http, repo) == before
    assert http.get(f"/api/models/{repo}/commits/main").json() == log
    assert [e["path"] for e in http.get(f"/api/models/{repo}/tree/main").json()] == [".gitattributes", "keep.txt"]
    assert http.head(f"/{repo}/resolve/main/valid.txt").status_code == 404


def test_concurrent_commits_lose_nothing(hub: HubProcess, repo: str) -> None:
    """8 threads commit a file each without parentCommit: every file and every commit is there, in one chain."""
    api = HfApi(endpoint=hub.url, token=hub.token)
    before = api.list_repo_commits(repo)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            api.create_commit(repo, [CommitOperationAdd(f"t/{i}.txt", b"%d" % i)], commit_message=f"thread {i}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {f for f in api.list_repo_files(repo) if f.startswith("t/")} == {f"t/{i}.txt" for i in range(8)}
    after = api.list_repo_commits(repo)
    assert len(after) == len(before) + 8 and after[8:] == before
    assert sorted(c.title for c in after[:8]) == sorted(f"thread {i}" for i in range(8))


def test_stale_parent_commit(hub: HubProcess, http: httpx.Client, repo: str) -> None:
    """With parentCommit, a head that moved is a 412 that says so; of 8 racing commits on one parent, one wins."""
    api = HfApi(endpoint=hub.url, token=hub.token)
    parent = head(http, repo)
    api.create_commit(repo, [CommitOperationAdd("moved.txt", b"m")], commit_message="moves main")
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(repo, [CommitOperationAdd("late.txt", b"l")], commit_message="late", parent_commit=parent)
    assert stale.value.response.status_code == 412
    assert stale.value.response.headers["x-error-code"] == "PreconditionFailed"
    message = stale.value.response.json()["error"]
    assert parent in message and head(http, repo) in message and "main" in message, message

    parent = head(http, repo)
    statuses: list[int] = []
    lock = threading.Lock()

    def race(i: int) -> None:
        r = commit(http, repo, add(f"race/{i}.txt"), header={"summary": f"race {i}", "parentCommit": parent})
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [412] * 7
    assert len([f for f in api.list_repo_files(repo) if f.startswith("race/")]) == 1


def test_retried_commit_is_idempotent(http: httpx.Client, repo: str) -> None:
    """A client that retries a commit whose first attempt succeeded gets the same commit, not a second one or 412."""
    parent = head(http, repo)
    body = [add("retry.txt", b"r"), {"key": "deletedFile", "value": {"path": "keep.txt"}}]
    first = commit(http, repo, *body, header={"summary": "retry me", "parentCommit": parent})
    second = commit(http, repo, *body, header={"summary": "retry me", "parentCommit": parent})
    assert first.status_code == second.status_code == 200, second.text
    assert first.json()["commitOid"] == second.json()["commitOid"]
    again = commit(http, repo, add("retry.txt", b"r"), header={"summary": "no parent"})
    assert again.json()["commitOid"] == first.json()["commitOid"], "an unchanged tree makes no new commit"
    other = commit(http, repo, add("retry.txt", b"changed"), header={"summary": "retry me", "parentCommit": parent})
    assert other.status_code == 412, "a different commit on a stale parent is still refused"
    log = http.get(f"/api/models/{repo}/commits/main").json()
    assert [c["title"] for c in log[:2]] == ["retry me", "test"]


def test_lfs_upload_then_commit(http: httpx.Client, repo: str) -> None:
    """The LFS path by hand: batch, signed PUT (no Authorization), verify, commit; a wrong body is refused."""
    data = b"lfs bytes" * 1000
    oid = hashlib.sha256(data).hexdigest()
    batch = http.post(f"/{repo}.git/info/lfs/objects/batch", json={"operation": "upload", "transfers": ["basic"],
                      "objects": [{"oid": oid, "size": len(data)}], "hash_algo": "sha256"})  # fmt: skip
    actions = batch.json()["objects"][0]["actions"]
    wrong = httpx.put(actions["upload"]["href"], content=b"x" * len(data))
    assert wrong.status_code == 400, wrong.text
    assert httpx.put(actions["upload"]["href"], content=data).status_code == 200
    assert http.post(actions["verify"]["href"], json={"oid": oid, "size": len(data)}).status_code == 200
    lfs = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}}
    assert commit(http, repo, lfs).status_code == 200
    assert http.get(f"/{repo}/resolve/main/w.bin").content == data


def test_concurrent_creates_and_uploads_of_shared_content(hub: HubProcess, http: httpx.Client, unique: str) -> None:
    """Repos share their initial tree and blobs: 8 repos created at once, and one LFS object uploaded 8 times at
    once, all succeed on the first attempt."""
    data = b"shared" * 5000
    oid = hashlib.sha256(data).hexdigest()
    statuses: list[int] = []
    lock = threading.Lock()

    def create_and_upload(i: int) -> None:
        with httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {hub.token}"}, timeout=60) as c:
            created = c.post("/api/repos/create", json={"name": f"{unique}-{i}"})
            batch = c.post(f"/admin/{unique}-{i}.git/info/lfs/objects/batch", json={"operation": "upload",
                           "objects": [{"oid": oid, "size": len(data)}]})  # fmt: skip
            actions = batch.json()["objects"][0].get("actions")
            put = httpx.put(actions["upload"]["href"], content=data) if actions else batch
            with lock:
                statuses.extend([created.status_code, batch.status_code, put.status_code])

    threads = [threading.Thread(target=create_and_upload, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 24


def test_account_names_that_are_hub_pages_are_reserved(hub: HubProcess) -> None:
    from openckpt.errors import BadRequestError

    with pytest.raises(BadRequestError, match="reserved"):
        hub.create_user("datasets")
