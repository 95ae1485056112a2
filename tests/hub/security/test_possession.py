"""Issue #12, proof of possession, replayed against a live hub (SQLite and PostgreSQL): a user who may write to some
repo names another repo's object by its sha256 in a commit (with and without size, LFS or Xet) and downloads it from
their own repo. Refused now, exactly as if the hub did not have the object: the commit fails as for an object never
uploaded, the LFS batch asks for an upload, verify answers 404, the CAS does not reconstruct it. Whoever really has
the bytes sends them (the store keeps one copy) and commits; whoever may read a repo holding them names them freely.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import CommitOperationCopy, HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

from openckpt.hub.services.storage.gc import collect
from tests.hub.conftest import People
from tests.hub.storagetools import XetUpload, commit_xet, database, put_xet, store_of
from tests.hub.test_xet_compat import run_client, write_folder, xet_env
from tests.hubtools import HubProcess, Postgres, start_hub

MB = 2**20
PART = 1 * MB
"""The multipart chunk size of this module's hub: files from its threshold go up in parts of this size."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub whose LFS uploads from 2 MiB are multipart (so that tests reach the completion route cheaply)."""
    data = tmp_path_factory.mktemp("hub") / "data"
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    env = {"OPENCKPT_MULTIPART_THRESHOLD": str(2 * MB), "OPENCKPT_MULTIPART_CHUNK_SIZE": str(PART)}
    server = start_hub(data, url, env=env)
    yield server
    server.stop()


def _weights(size: int) -> bytes:
    """A safetensors file of one tensor of ``size`` random bytes (unique per call): clean to the scanner."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + os.urandom(size)


def _api(hub: HubProcess, token: str) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _commit(hub: HubProcess, token: str, repo: str, path: str, oid: str, size: int | None) -> httpx.Response:
    """An NDJSON commit adding ``path`` as the LFS object ``oid`` (a copy, when ``size`` is None)."""
    value: dict[str, Any] = {"path": path, "algo": "sha256", "oid": oid}
    if size is not None:
        value["size"] = size
    lines = [{"key": "header", "value": {"summary": f"add {path}"}}, {"key": "lfsFile", "value": value}]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    headers = {**_auth(token), "content-type": "application/x-ndjson"}
    return httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content=body, headers=headers, timeout=60)


def _batch(hub: HubProcess, token: str, repo: str, oid: str, size: int, operation: str = "upload") -> dict[str, Any]:
    """The LFS batch API's answer for one object."""
    body = {"operation": operation, "transfers": ["basic", "multipart"], "objects": [{"oid": oid, "size": size}]}
    headers = {**_auth(token), "accept": "application/vnd.git-lfs+json"}
    r = httpx.post(f"{hub.url}/{repo}.git/info/lfs/objects/batch", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()["objects"][0]
    return answer


def _verify(hub: HubProcess, token: str, repo: str, oid: str, size: int) -> int:
    r = httpx.post(f"{hub.url}/api/lfs/verify/model/{repo}", json={"oid": oid, "size": size}, headers=_auth(token))
    return r.status_code


def _refusal(r: httpx.Response, oid: str, stand_in: httpx.Response, stand_in_oid: str) -> None:
    """``r`` is refused exactly as ``stand_in`` (naming an object nobody ever uploaded) is."""
    assert r.status_code == stand_in.status_code == 400, r.text
    assert r.headers.get("x-error-code") == stand_in.headers.get("x-error-code")
    assert r.json() == json.loads(stand_in.text.replace(stand_in_oid, oid))


def _blob_files(hub: HubProcess, sha256: str) -> int:
    """How many files of the store hold the blob ``sha256`` (whole: not as xorbs)."""
    return sum(1 for p in (hub.data_dir / "store").rglob(sha256) if p.is_file())


def _store_files(hub: HubProcess) -> int:
    return sum(1 for p in (hub.data_dir / "store").rglob("*") if p.is_file())


def _absent(hub: HubProcess, token: str, repo: str, path: str, cache: Path) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        hf_hub_download(repo, path, endpoint=hub.url, token=token, cache_dir=cache)
    assert e.value.response is not None and e.value.response.status_code == 404


def _reconstruct(hub: HubProcess, repo: str, token: str, file_hash: str) -> int:
    """Status of the CAS reconstruction of ``file_hash`` with a Xet read token of ``repo``."""
    r = httpx.get(f"{hub.url}/api/models/{repo}/xet-read-token/main", headers=_auth(token))
    assert r.status_code == 200, r.text
    cas, token = r.json()["casUrl"], r.json()["accessToken"]
    return httpx.get(f"{cas}/v1/reconstructions/{file_hash}", headers=_auth(token)).status_code


def _private_object(hub: HubProcess, people: People, unique: str, data: bytes) -> tuple[str, str]:
    """alice's private repo holding ``data`` as ``secret.safetensors`` (by LFS); (repo, sha256)."""
    repo = f"alice/{unique}-secret"
    api = _api(hub, people.alice)
    api.create_repo(repo, private=True)
    api.upload_file(path_or_fileobj=data, path_in_repo="secret.safetensors", repo_id=repo)
    return repo, hashlib.sha256(data).hexdigest()


def test_a_private_object_named_by_sha256_is_missing(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    data = _weights(70_000)
    _, oid = _private_object(hub, people, unique, data)
    mine = f"bob/{unique}"
    _api(hub, people.bob).create_repo(mine)
    never = hashlib.sha256(_weights(64)).hexdigest()  # an object nobody uploaded: the answer to copy

    for size in (len(data), None):
        stolen = _commit(hub, people.bob, mine, "stolen.safetensors", oid, size)
        _refusal(stolen, oid, _commit(hub, people.bob, mine, "stolen.safetensors", never, size), never)
    _absent(hub, people.bob, mine, "stolen.safetensors", tmp_path / "c")

    asked = _batch(hub, people.bob, mine, oid, len(data))
    assert "upload" in asked["actions"], "the batch asks for the bytes, as for any object the hub lacks"
    assert asked.keys() == _batch(hub, people.bob, mine, never, len(data)).keys()
    assert "error" in _batch(hub, people.bob, mine, oid, len(data), "download")
    assert _verify(hub, people.bob, mine, oid, len(data)) == 404
    assert _verify(hub, people.alice, f"alice/{unique}-secret", oid, len(data)) == 200  # hers: stored, she has it


def test_a_gated_object_in_a_visible_tree_is_missing_until_access_is_granted(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    gated, data = f"alice/{unique}-gated", _weights(50_000)
    owner = _api(hub, people.alice)
    owner.create_repo(gated)
    owner.upload_file(path_or_fileobj=data, path_in_repo="weights.safetensors", repo_id=gated)
    owner.update_repo_settings(gated, gated="manual")
    mine, bob = f"bob/{unique}", _api(hub, people.bob)
    bob.create_repo(mine)

    (entry,) = [f for f in bob.list_repo_tree(gated) if f.path == "weights.safetensors"]  # the tree is public...
    oid = entry.lfs.sha256  # type: ignore[union-attr]
    with pytest.raises(GatedRepoError):  # ...its files are not
        hf_hub_download(gated, "weights.safetensors", endpoint=hub.url, token=people.bob, cache_dir=tmp_path / "c0")
    for size in (len(data), None):
        assert _commit(hub, people.bob, mine, "w.safetensors", oid, size).status_code == 400
    assert "upload" in _batch(hub, people.bob, mine, oid, len(data))["actions"]
    assert _verify(hub, people.bob, mine, oid, len(data)) == 404
    with pytest.raises(GatedRepoError):
        bob.duplicate_repo(gated, f"bob/{unique}-dup")

    owner.grant_access(gated, "bob")  # a reader with access has the bytes: names them by hash, copies the repo
    r = _commit(hub, people.bob, mine, "w.safetensors", oid, None)
    assert r.status_code == 200, r.text
    got = hf_hub_download(mine, "w.safetensors", endpoint=hub.url, token=people.bob, cache_dir=tmp_path / "c1")
    assert Path(got).read_bytes() == data
    bob.duplicate_repo(gated, f"bob/{unique}-dup")
    got = hf_hub_download(
        f"bob/{unique}-dup", "weights.safetensors", endpoint=hub.url, token=people.bob, cache_dir=tmp_path / "c2"
    )
    assert Path(got).read_bytes() == data


def test_whoever_sends_the_bytes_has_them_and_the_store_keeps_one_copy(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    small, large = _weights(40_000), _weights(2 * MB + 12_345)  # by one PUT, and in three parts
    _, small_oid = _private_object(hub, people, unique, small)
    _api(hub, people.alice).upload_file(
        path_or_fileobj=large, path_in_repo="large.safetensors", repo_id=f"alice/{unique}-secret"
    )
    large_oid = hashlib.sha256(large).hexdigest()
    mine, bob = f"bob/{unique}", _api(hub, people.bob)
    bob.create_repo(mine)
    assert _commit(hub, people.bob, mine, "large.safetensors", large_oid, len(large)).status_code == 400

    # a completion without parts proves nothing: the bytes are stored already, but not sent by bob
    asked = _batch(hub, people.bob, mine, large_oid, len(large))["actions"]["upload"]
    assert len(asked["header"]) == 4  # chunk_size and three part URLs: multipart
    done = httpx.post(asked["href"], json={"oid": large_oid, "parts": []}, timeout=60)
    assert done.status_code in (200, 400)
    assert _commit(hub, people.bob, mine, "large.safetensors", large_oid, len(large)).status_code == 400

    files = _store_files(hub)
    for path, data in (
        ("small.safetensors", small),
        ("large.safetensors", large),
    ):  # the stock client: batch, upload, verify, commit
        bob.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=mine)
    assert _store_files(hub) == files, "the re-uploaded bytes were stored already: no second copy"
    assert _blob_files(hub, small_oid) == _blob_files(hub, large_oid) == 1
    for path, data in (("small.safetensors", small), ("large.safetensors", large)):
        got = hf_hub_download(mine, path, endpoint=hub.url, token=people.bob, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == data
    assert _verify(hub, people.bob, mine, small_oid, len(small)) == 200
    assert _batch(hub, people.bob, mine, small_oid, len(small)).get("actions") is None  # has it: nothing to send


def test_readers_name_what_they_may_read(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    lab, data = f"lab/{unique}", _weights(30_000)
    _api(hub, people.alice).create_repo(lab, private=True)
    _api(hub, people.alice).upload_file(path_or_fileobj=data, path_in_repo="w.safetensors", repo_id=lab)
    oid = hashlib.sha256(data).hexdigest()

    _api(hub, people.bob).create_repo(f"bob/{unique}")
    assert _commit(hub, people.bob, f"bob/{unique}", "x.safetensors", oid, None).status_code == 400
    olga = _api(hub, people.olga)  # reads the org's repos, may not write to them
    olga.create_repo(f"olga/{unique}")
    r = _commit(hub, people.olga, f"olga/{unique}", "from-lab.safetensors", oid, None)
    assert r.status_code == 200, r.text
    r = _commit(hub, people.bob, f"bob/{unique}", "x.safetensors", oid, None)  # olga's repo is public: now bob reads it
    assert r.status_code == 200, r.text

    # the repo's own history, by the stock client: a copy inside the repo, of the head and of an older revision
    olga.delete_file("from-lab.safetensors", repo_id=f"olga/{unique}")
    old = olga.list_repo_commits(f"olga/{unique}")[1].commit_id
    copy = CommitOperationCopy(
        src_path_in_repo="from-lab.safetensors", path_in_repo="again.safetensors", src_revision=old
    )
    olga.create_commit(f"olga/{unique}", [copy], commit_message="copy from history")
    got = hf_hub_download(
        f"olga/{unique}", "again.safetensors", endpoint=hub.url, token=people.olga, cache_dir=tmp_path
    )
    assert Path(got).read_bytes() == data
    with pytest.raises(RepositoryNotFoundError):
        _api(hub, people.bob).duplicate_repo(lab, f"bob/{unique}-dup")


def test_xet_files_named_by_sha256(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    theirs, mine = f"alice/{unique}-xet", f"bob/{unique}"
    _api(hub, people.alice).create_repo(theirs, private=True)
    _api(hub, people.bob).create_repo(mine)
    up = XetUpload(_weights(300_000))
    commit_xet(hub, theirs, up, "x.safetensors", people.alice)
    size = len(up.data)

    assert _commit(hub, people.bob, mine, "x.safetensors", up.sha256, size).status_code == 400
    assert _commit(hub, people.bob, mine, "x.safetensors", up.sha256, None).status_code == 400
    assert _reconstruct(hub, mine, people.bob, up.file_hex) == 404

    liar = XetUpload(_weights(300_000))  # bob's own bytes, registered under alice's sha256
    liar.sha256 = up.sha256
    assert len(liar.data) == size
    put_xet(hub, mine, liar, people.bob)
    assert _commit(hub, people.bob, mine, "x.safetensors", up.sha256, size).status_code == 400

    put_xet(hub, mine, up, people.bob)  # the same file, uploaded by bob: xorb known already, his shard proves it
    r = _commit(hub, people.bob, mine, "x.safetensors", up.sha256, size)
    assert r.status_code == 200, r.text
    got = hf_hub_download(mine, "x.safetensors", endpoint=hub.url, token=people.bob, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == up.data
    assert _reconstruct(hub, mine, people.bob, up.file_hex) == 200


def test_hf_xet_uploads_of_the_same_bytes_dedup_and_commit(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    """The stock client with hf_xet: alice's private upload, then bob's of the same bytes (global dedup: he sends
    only a shard); before his upload, naming the file by sha256 is refused."""
    files = {"w.safetensors": _weights(3 * MB)}
    digests = write_folder(tmp_path / "src", files)
    theirs, mine = f"alice/{unique}", f"bob/{unique}"
    _api(hub, people.alice).create_repo(theirs, private=True)
    run_client(
        "upload",
        xet_env(hub.url, tmp_path / "a", people.alice),
        endpoint=hub.url,
        token=people.alice,
        repo=theirs,
        folder=str(tmp_path / "src"),
        message="alice's weights",
    )
    _api(hub, people.bob).create_repo(mine)
    oid, size = digests["w.safetensors"], len(files["w.safetensors"])
    assert _commit(hub, people.bob, mine, "w.safetensors", oid, size).status_code == 400

    run_client(
        "upload",
        xet_env(hub.url, tmp_path / "b", people.bob),
        endpoint=hub.url,
        token=people.bob,
        repo=mine,
        folder=str(tmp_path / "src"),
        message="bob's copy of the same bytes",
    )
    got = hf_hub_download(mine, "w.safetensors", endpoint=hub.url, token=people.bob, cache_dir=tmp_path / "c")
    assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == oid


def test_garbage_collection_forgets_uploads_never_committed(hub: HubProcess, people: People, unique: str) -> None:
    data = _weights(20_000)
    _, oid = _private_object(hub, people, unique, data)
    mine = f"bob/{unique}"
    _api(hub, people.bob).create_repo(mine)
    href = _batch(hub, people.bob, mine, oid, len(data))["actions"]["upload"]["href"]
    assert httpx.put(href, content=data, timeout=60).status_code == 200
    assert _verify(hub, people.bob, mine, oid, len(data)) == 200  # sent by bob: his

    with database(hub) as db:  # bob never commits it; the grace period passes
        collect(db, store_of(hub), grace=timedelta(0))
    assert _verify(hub, people.bob, mine, oid, len(data)) == 404
    assert _blob_files(hub, oid) == 1, "alice's commit keeps the bytes: only bob's claim went"
