"""The hub as a pull-through cache of another hub (``OPENCKPT_UPSTREAM``): two hub processes on loopback, one the
upstream, read through the other with the stock client, ``hf download`` and transformers; and a static upstream
(tests/hub/mirrortools.py) for what a real openckpt hub would not serve: a malicious pickle, a cut download."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from openckpt.hub.services.mirror.live import HOLD
from tests import zygote
from tests.hub.conftest import client_env, run_checked
from tests.hub.mirrortools import static_upstream
from tests.hubtools import HubProcess, Postgres, start_hub

MALICIOUS = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R."
"""A pickle calling os.system, built by hand and never loaded."""
WEIGHTS = os.urandom(3 << 20)
CARD = b"---\nlicense: mit\n---\n# Tiny\n\nA model to mirror.\n"


def _database(request: pytest.FixtureRequest) -> str:
    if request.param != "postgresql":
        return ""
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.create_database(f"mirror_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """The upstream hub: SQLite, with org ``acme``'s repo ``acme/tiny``."""
    server = start_hub(tmp_path_factory.mktemp("upstream") / "data")
    server.create_org("acme", {})
    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo("acme/tiny")
    api.upload_file(path_or_fileobj=CARD, path_in_repo="README.md", repo_id="acme/tiny")
    api.upload_file(path_or_fileobj=WEIGHTS, path_in_repo="weights/model.safetensors", repo_id="acme/tiny")
    api.upload_file(path_or_fileobj=b'{"model_type": "none"}', path_in_repo="config.json", repo_id="acme/tiny")
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mirror(
    request: pytest.FixtureRequest, upstream: HubProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubProcess]:
    """A hub mirroring ``upstream`` (its branches re-checked after an hour), once per database."""
    env = {"OPENCKPT_UPSTREAM": upstream.url, "OPENCKPT_UPSTREAM_TTL": "3600"}
    server = start_hub(tmp_path_factory.mktemp("mirror") / "data", _database(request), env=env)
    yield server
    server.stop()


def test_stock_client_reads_through_the_mirror_with_the_upstreams_commit_ids(
    upstream: HubProcess, mirror: HubProcess, tmp_path: Path
) -> None:
    direct = HfApi(endpoint=upstream.url).model_info("acme/tiny", files_metadata=True)
    info = HfApi(endpoint=mirror.url).model_info("acme/tiny", files_metadata=True)
    assert info.sha == direct.sha
    assert info.card_data is not None and info.card_data.get("license") == "mit"  # metadata derived as after a commit
    mine = {s.rfilename: (s.size, s.blob_id) for s in info.siblings or []}
    assert mine == {s.rfilename: (s.size, s.blob_id) for s in direct.siblings or []}
    folder = snapshot_download("acme/tiny", endpoint=mirror.url, cache_dir=tmp_path / "cache")
    assert Path(folder).name == direct.sha  # the client's cache is keyed by the upstream's commit id
    assert (Path(folder) / "weights/model.safetensors").read_bytes() == WEIGHTS
    assert (Path(folder) / "README.md").read_bytes() == CARD
    pinned = hf_hub_download(
        "acme/tiny", "config.json", revision=direct.sha, endpoint=mirror.url, cache_dir=tmp_path / "cache2"
    )
    assert Path(pinned).read_bytes() == b'{"model_type": "none"}'
    for path in ("weights/model.safetensors", "README.md"):
        theirs = httpx.head(f"{upstream.url}/acme/tiny/resolve/main/{path}")
        ours = httpx.head(f"{mirror.url}/acme/tiny/resolve/main/{path}")
        assert ours.status_code == 200, ours.text
        for header in ("x-repo-commit", "etag", "x-linked-etag", "x-linked-size", "content-length"):
            assert ours.headers[header] == theirs.headers[header], header
    tree = HfApi(endpoint=mirror.url).list_repo_tree("acme/tiny", recursive=True)
    assert sorted(e.path for e in tree) == [
        ".gitattributes",
        "README.md",
        "config.json",
        "weights",
        "weights/model.safetensors",
    ]
    refs = HfApi(endpoint=mirror.url).list_repo_refs("acme/tiny")
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", direct.sha)] and refs.tags == []


def test_hf_download_and_transformers_through_the_mirror(
    upstream: HubProcess, mirror: HubProcess, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    repo = f"acme/gpt-{uuid.uuid4().hex[:6]}"
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=64, n_positions=16)
    )
    model.save_pretrained(tmp_path / "model")
    api = HfApi(endpoint=upstream.url, token=upstream.token)
    api.create_repo(repo)
    sha = api.upload_folder(repo_id=repo, folder_path=tmp_path / "model").oid
    env = client_env(mirror.url, tmp_path / "home")
    run_checked(
        [str(Path(sys.executable).with_name("hf")), "download", repo, "--local-dir", str(tmp_path / "hf")], env=env
    )
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "hf" / name).read_bytes() == (tmp_path / "model" / name).read_bytes()
    script = (
        "import hashlib, sys, transformers\n"
        "m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "print(hashlib.sha256(b''.join(v.numpy().tobytes() for v in m.state_dict().values())).hexdigest())\n"
    )
    out = run_checked([sys.executable, "-c", script, repo], env=env).strip().splitlines()[-1]
    expected = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
    assert out == expected
    assert HfApi(endpoint=mirror.url).model_info(repo).sha == sha


def test_a_local_repo_and_a_local_namespace_win_over_the_upstream(upstream: HubProcess, mirror: HubProcess) -> None:
    org = f"local-{uuid.uuid4().hex[:6]}"
    mirror.create_org(org, {})  # an org of this hub, if empty: not the mirror's
    upstream.create_org(org, {})
    upstream_api = HfApi(endpoint=upstream.url, token=upstream.token)
    upstream_api.create_repo(f"{org}/x")
    with pytest.raises(HfHubHTTPError) as caught:
        HfApi(endpoint=mirror.url).model_info(f"{org}/x")
    assert caught.value.response.status_code == 404
    HfApi(endpoint=mirror.url, token=mirror.token).create_repo(f"{org}/y")
    upstream_api.create_repo(f"{org}/y")
    upstream_api.upload_file(path_or_fileobj=b"upstream", path_in_repo="only-upstream.txt", repo_id=f"{org}/y")
    assert "only-upstream.txt" not in HfApi(endpoint=mirror.url).list_repo_files(f"{org}/y")
    repo = f"acme/local-{uuid.uuid4().hex[:6]}"  # in a namespace the mirror made, a repo made here wins too
    upstream_api.create_repo(repo)
    upstream_api.upload_file(path_or_fileobj=b"upstream", path_in_repo="only-upstream.txt", repo_id=repo)
    HfApi(endpoint=mirror.url).model_info("acme/tiny")  # the mirror made acme
    HfApi(endpoint=mirror.url, token=mirror.token).create_repo(repo)
    assert "only-upstream.txt" not in HfApi(endpoint=mirror.url).list_repo_files(repo)


def test_a_private_upstream_repo_is_read_with_the_users_own_upstream_token_only(
    upstream: HubProcess, mirror: HubProcess, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    owner, stranger = upstream.create_user(f"carol{tag}"), upstream.create_user(f"eve{tag}")
    repo = f"carol{tag}/secret"
    HfApi(endpoint=upstream.url, token=owner).create_repo(repo, private=True)
    HfApi(endpoint=upstream.url, token=owner).upload_file(path_or_fileobj=WEIGHTS, path_in_repo="w.bin", repo_id=repo)
    bob, dave = mirror.create_user(f"bob{tag}"), mirror.create_user(f"dave{tag}")
    for token in (None, dave):  # nobody's upstream token reaches it: as if it did not exist
        with pytest.raises(HfHubHTTPError) as caught:
            HfApi(endpoint=mirror.url, token=token).model_info(repo)
        assert caught.value.response.status_code == 404
    put = httpx.put(
        f"{mirror.url}/api/settings/upstream-token", json={"token": owner}, headers={"authorization": f"Bearer {bob}"}
    )
    assert put.status_code == 200, put.text
    shown = httpx.get(f"{mirror.url}/api/settings/upstream-token", headers={"authorization": f"Bearer {bob}"})
    assert shown.json() == {"set": True} and owner not in shown.text
    got = hf_hub_download(repo, "w.bin", endpoint=mirror.url, token=bob, cache_dir=tmp_path / "bob")
    assert Path(got).read_bytes() == WEIGHTS
    httpx.put(
        f"{mirror.url}/api/settings/upstream-token",
        json={"token": stranger},
        headers={"authorization": f"Bearer {dave}"},
    )
    for token in (None, dave):  # bob's token is never used for anyone else
        refused = httpx.get(
            f"{mirror.url}/{repo}/resolve/main/w.bin", headers={"authorization": f"Bearer {token}"} if token else {}
        )
        assert refused.status_code in (401, 403) and refused.headers["x-error-code"] == "GatedRepo", refused.text
    httpx.put(
        f"{mirror.url}/api/settings/upstream-token", json={"token": owner}, headers={"authorization": f"Bearer {dave}"}
    )
    got = hf_hub_download(repo, "w.bin", endpoint=mirror.url, token=dave, cache_dir=tmp_path / "dave")
    assert Path(got).read_bytes() == WEIGHTS


def test_admin_api_lists_refreshes_and_evicts(upstream: HubProcess, mirror: HubProcess) -> None:
    api = HfApi(endpoint=upstream.url, token=upstream.token)
    repo = f"acme/admin-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo)
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id=repo).oid
    auth = {"authorization": f"Bearer {mirror.token}"}
    added = httpx.post(f"{mirror.url}/api/admin/mirror", json={"repo_id": repo}, headers=auth)
    assert added.status_code == 200, added.text
    assert added.json()["commit"] == first
    second = api.upload_file(path_or_fileobj=b"two", path_in_repo="a.txt", repo_id=repo).oid
    assert HfApi(endpoint=mirror.url).model_info(repo).sha == first  # main is checked again after the TTL only
    refreshed = httpx.post(f"{mirror.url}/api/admin/mirror", json={"repo_id": repo}, headers=auth).json()
    assert refreshed["commit"] == second
    assert HfApi(endpoint=mirror.url).model_info(repo).sha == second
    assert HfApi(endpoint=mirror.url).model_info(repo, revision=first).sha == first  # a commit id is kept
    history = [c.commit_id for c in HfApi(endpoint=mirror.url).list_repo_commits(repo)]
    assert history == [second, first]  # the upstream's parent; older commits were never fetched
    listed = {r["id"]: r for r in httpx.get(f"{mirror.url}/api/admin/mirror", headers=auth).json()}
    assert {s["commit"] for s in listed[repo]["revisions"]} == {second}
    assert httpx.get(f"{mirror.url}/api/admin/mirror").status_code == 401
    gone = httpx.delete(f"{mirror.url}/api/admin/mirror/models/{repo}", headers=auth)
    assert gone.status_code == 200, gone.text
    assert repo not in {r["id"] for r in httpx.get(f"{mirror.url}/api/admin/mirror", headers=auth).json()}
    assert HfApi(endpoint=mirror.url).model_info(repo).sha == second  # read again: fetched again


def test_a_malicious_upstream_file_is_refused_by_the_gate(tmp_path: Path) -> None:
    with static_upstream() as up:
        up.add("evil/pickle", {"README.md": b"# evil\n", "model.bin": MALICIOUS})
        up.add("good/model", {"README.md": b"# good\n"})
        up.add("evil/mixed", {"model.safetensors": safetensors_file(4 << 20), "extra.bin": MALICIOUS})
        lying = safetensors_file(24 << 20)
        up.add("acme/lying", {"w.safetensors": lying})
        up.corrupt.add("w.safetensors")
        server = start_hub(tmp_path / "data", env={"OPENCKPT_UPSTREAM": up.url})
        try:
            # a file that could stream as it arrives waits for the rest of its revision's verdict
            mixed = httpx.get(f"{server.url}/evil/mixed/resolve/main/model.safetensors")
            assert mixed.status_code == 400 and mixed.headers["x-error-code"] == "UnsafeFile", mixed.text
            assert "extra.bin" in mixed.text
            received = 0
            lied = f"{server.url}/acme/lying/resolve/main/w.safetensors"
            with pytest.raises(httpx.TransportError), httpx.stream("GET", lied) as r:  # its sha256 fails: cut
                assert r.status_code == 200
                for chunk in r.iter_bytes():
                    received += len(chunk)
            assert received <= len(lying) - HOLD  # the held tail never left
            again = httpx.get(lied, headers={"range": "bytes=0-"})  # a resumed read waits for the verdict
            assert again.status_code == 502 and "other bytes" in again.text, again.text
            answer = httpx.get(f"{server.url}/evil/pickle/resolve/main/model.bin")
            assert answer.status_code == 400
            assert answer.headers["x-error-code"] == "UnsafeFile"
            assert "model.bin" in answer.text and "os.system" in answer.text and "malicious" in answer.text
            assert HfApi(endpoint=server.url).model_info("good/model").sha == up.repos["good/model"][0]
            with pytest.raises(HfHubHTTPError):
                HfApi(endpoint=server.url).list_repo_files("evil/pickle")  # nothing of it is visible
        finally:
            server.stop()


def test_an_upstream_failing_mid_download_fails_cleanly_and_cached_revisions_stay(tmp_path: Path) -> None:
    with static_upstream() as up:
        up.add("acme/cut", {"w.bin": os.urandom(4 << 20)})
        up.cut.add("w.bin")
        env = {"OPENCKPT_UPSTREAM": up.url, "OPENCKPT_UPSTREAM_TTL": "0"}  # main is checked on every read
        server = start_hub(tmp_path / "data", env=env)
        try:
            up.cut.clear()
            first = up.add("acme/cached", {"README.md": b"# first\n"})
            assert HfApi(endpoint=server.url).model_info("acme/cached").sha == first
            cached = up.add("acme/cached", {"README.md": b"# cached\n", "w.bin": os.urandom(2 << 20)})
            assert HfApi(endpoint=server.url).model_info("acme/cached").sha == cached  # main checked again (TTL 0)
            up.cut.add("w.bin")
            answer = httpx.get(f"{server.url}/acme/cut/resolve/main/w.bin")
            assert answer.status_code == 502 and answer.headers["x-error-code"] == "UpstreamError", answer.text
            assert "w.bin" in answer.text
            up.cut.clear()  # a failed first fetch is tried again
            assert httpx.get(f"{server.url}/acme/cut/resolve/main/w.bin").content == up.repos["acme/cut"][1]["w.bin"]
        finally:
            up_url = up.url
    try:  # the upstream is gone: what was cached is served, what was not is a clear 502
        folder = snapshot_download("acme/cached", endpoint=server.url, cache_dir=tmp_path / "cache")
        assert Path(folder).name == cached
        missing = httpx.get(f"{server.url}/acme/never/resolve/main/w.bin")
        assert missing.status_code == 502 and up_url in missing.text
    finally:
        server.stop()


def test_a_large_file_from_an_upstream_cdn_and_a_cut_transfer(tmp_path: Path) -> None:
    """Large files are read past httpx (``services/mirror/upstream.py``): redirects are followed, without the hub-wide
    token to another origin; a transfer cut halfway cuts the streamed read, and the next read fetches the file again."""
    data = safetensors_file(20 << 20)
    with static_upstream() as up:
        sha = up.add("acme/cdn", {"w.safetensors": data})
        up.redirect = True
        up.cut.add("w.safetensors")
        server = start_hub(tmp_path / "data", env={"OPENCKPT_UPSTREAM": up.url, "OPENCKPT_UPSTREAM_TOKEN": "hub-wide"})
        try:
            url = f"{server.url}/acme/cdn/resolve/main/w.safetensors"
            with httpx.stream("GET", url) as cut:
                if cut.status_code == 200:  # it streamed, then was cut short
                    with pytest.raises(httpx.TransportError):
                        for _ in cut.iter_bytes():
                            pass
                else:  # the fetch failed before the read began
                    assert cut.status_code == 502 and "w.safetensors" in cut.read().decode(), cut.read()
            up.cut.clear()
            answer = httpx.get(url)
            assert answer.status_code == 200 and answer.headers["x-repo-commit"] == sha
            assert answer.content == data
            assert up.downloads["w.safetensors"] == 2
            assert up.cdn_authorizations == [None, None]
        finally:
            server.stop()


def safetensors_file(size: int) -> bytes:
    """A valid safetensors file of one U8 tensor of ``size`` random bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + os.urandom(size)


def test_concurrent_readers_of_an_uncached_file_stream_from_one_upstream_transfer(tmp_path: Path) -> None:
    data = safetensors_file(128 * 10**6)  # the 512 MB is bench/mirror.py's (--clients): ~4x this test's time
    with static_upstream() as up:
        sha = up.add("acme/big", {"big.safetensors": data, "config.json": b"{}"})
        up.pace = 0.002
        server = start_hub(tmp_path / "data", env={"OPENCKPT_UPSTREAM": up.url})
        first: list[int] = []
        try:

            def read(i: int) -> bool:
                if i == 0:  # the stock client too: its HEAD, then its GET, while the file arrives
                    got = hf_hub_download("acme/big", "big.safetensors", endpoint=server.url, cache_dir=tmp_path / "c")
                    return Path(got).parent.name == sha and Path(got).read_bytes() == data
                pos = 0
                with httpx.stream("GET", f"{server.url}/acme/big/resolve/main/big.safetensors", timeout=600) as r:
                    assert r.status_code == 200, r.read()
                    assert r.headers["x-repo-commit"] == sha
                    for chunk in r.iter_bytes(4 << 20):
                        if not pos:
                            first.append(up.sent["big.safetensors"])
                        if chunk != data[pos : pos + len(chunk)]:
                            return False
                        pos += len(chunk)
                return pos == len(data)

            with ThreadPoolExecutor(16) as pool:
                assert all(pool.map(read, range(16)))
            assert up.downloads["big.safetensors"] == 1
            assert min(first) < len(data)  # readers got bytes while the upstream was still sending them
        finally:
            server.stop()


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_a_reader_that_joins_late_reads_what_left_memory_from_the_file(
    storage: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Followers are sent the newest chunks from memory, and the fetcher waits a while for one that stops
    (``services/mirror/live.py``); a reader that joins once the start left memory reads it from the file the store is
    writing (a spool of the fetch's own when the store is S3), then follows from memory."""
    data = safetensors_file(64 << 20)
    with static_upstream() as up:
        up.add("acme/late", {"w.safetensors": data})
        up.pace = 0.05
        bucket = request.getfixturevalue("s3").storage_url(f"late-{uuid.uuid4().hex[:8]}") if storage == "s3" else ""
        server = start_hub(tmp_path / "data", storage_url=bucket, env={"OPENCKPT_UPSTREAM": up.url})
        url = f"{server.url}/acme/late/resolve/main/w.safetensors"
        halfway, late_start = threading.Event(), []
        try:

            def read(late: bool) -> bytes:
                if late:
                    halfway.wait(600)
                got = bytearray()
                with httpx.stream("GET", url, timeout=600) as r:
                    assert r.status_code == 200, r.read()
                    for chunk in r.iter_bytes(1 << 20):
                        if late and not got:
                            late_start.append(up.sent["w.safetensors"])
                        got += chunk
                        if not late and len(got) == 40 << 20:  # past what stays in memory
                            halfway.set()
                            time.sleep(1.5)  # longer than the fetcher waits for a follower
                return bytes(got)

            with ThreadPoolExecutor(2) as pool:
                assert list(pool.map(read, (False, True))) == [data, data]
            assert up.downloads["w.safetensors"] == 1
            assert late_start[0] < len(data)  # the late reader followed the fetch, from its first byte
        finally:
            server.stop()


def test_a_web_page_of_an_upstream_repo_fetches_it(upstream: HubProcess, mirror: HubProcess) -> None:
    repo = f"acme/page-{uuid.uuid4().hex[:6]}"
    api = HfApi(endpoint=upstream.url, token=upstream.token)
    api.create_repo(repo)
    api.upload_file(path_or_fileobj=CARD, path_in_repo="README.md", repo_id=repo)
    answer = httpx.get(f"{mirror.url}/{repo}")
    for _ in range(60):  # a repo that takes long to fetch is said to be on its way; the page reloads
        if answer.status_code != 202:
            break
        assert "being fetched" in answer.text and 'http-equiv="refresh"' in answer.text
        answer = httpx.get(f"{mirror.url}/{repo}")
    assert answer.status_code == 200, answer.text
    assert "A model to mirror." in answer.text
    assert httpx.get(f"{mirror.url}/acme/no-such-repo-{uuid.uuid4().hex[:6]}").status_code == 404


def test_the_serve_command_takes_upstream(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).with_name("openckpt"))
    out = zygote.run([cli, "serve", "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert "--upstream" in out.stdout


def test_the_mirror_command_adds_lists_refreshes_and_evicts(
    upstream: HubProcess, mirror: HubProcess, tmp_path: Path
) -> None:
    repo = f"acme/cli-{uuid.uuid4().hex[:6]}"
    api = HfApi(endpoint=upstream.url, token=upstream.token)
    api.create_repo(repo)
    sha = api.upload_file(path_or_fileobj=b"cli", path_in_repo="a.txt", repo_id=repo).oid
    cli = str(Path(sys.executable).with_name("openckpt"))
    env = {**client_env(mirror.url, tmp_path / "home"), "HF_TOKEN": mirror.token}
    added = json.loads(run_checked([cli, "mirror", "add", f"{repo}@{sha}", "--json"], env=env))
    assert added["commit"] == sha
    run_checked([cli, "mirror", "refresh", repo], env=env)
    listed = json.loads(run_checked([cli, "mirror", "ls", "--json"], env=env))
    assert {r["revision"] for r in next(x for x in listed if x["id"] == repo)["revisions"]} == {sha, "main"}
    run_checked([cli, "mirror", "evict", repo], env=env)
    assert repo not in {x["id"] for x in json.loads(run_checked([cli, "mirror", "ls", "--json"], env=env))}


@pytest.mark.parametrize(
    ("method", "path", "target"),
    [
        ("GET", "/api/models/a/b", ("model", "a/b", "main")),
        ("GET", "/api/models/a/b/revision/v1%2Fx", ("model", "a/b", "v1/x")),
        ("GET", "/api/datasets/a/b/tree/main/x/y?recursive=1", ("dataset", "a/b", "main")),
        ("POST", "/api/models/a/b/paths-info/abc", ("model", "a/b", "abc")),
        ("GET", "/api/models/a/b/xet-read-token/main", ("model", "a/b", "main")),
        ("GET", "/a/b/resolve/main/x.bin", ("model", "a/b", "main")),
        ("HEAD", "/datasets/a/b/resolve/refs%2Fpr%2F1/x", ("dataset", "a/b", "refs/pr/1")),
        ("POST", "/api/models/a/b/commit/main", None),
        ("GET", "/api/models", None),
        ("GET", "/buckets/a/b/resolve/x", None),
    ],
)
def test_the_reads_the_mirror_answers(method: str, path: str, target: tuple[str, str, str] | None) -> None:
    from openckpt.hub.routes.mirror import read_target

    assert read_target(method, path) == target


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/a/b", ("model", "a/b", "main")),
        ("/a/b?rev=v1", ("model", "a/b", "v1")),
        ("/datasets/a/b/tree/dev/x", ("dataset", "a/b", "dev")),
        ("/a/b/blob/refs%2Fpr%2F1/x.txt", ("model", "a/b", "refs/pr/1")),
        ("/a/b/discussions", None),
        ("/settings/tokens", None),
        ("/api/models", None),
        ("/a", None),
    ],
)
def test_the_web_pages_that_fetch(path: str, target: tuple[str, str, str] | None) -> None:
    from openckpt.hub.routes.mirror import page_target

    assert page_target("GET", path) == target


def test_the_hub_wide_upstream_token_comes_from_a_private_file(upstream: HubProcess, tmp_path: Path) -> None:
    repo = f"acme/hubwide-{uuid.uuid4().hex[:6]}"
    api = HfApi(endpoint=upstream.url, token=upstream.token)
    api.create_repo(repo, private=True)
    sha = api.upload_file(path_or_fileobj=b"shared", path_in_repo="a.txt", repo_id=repo).oid
    token_file = tmp_path / "upstream-token"
    token_file.write_text(upstream.token + "\n")
    token_file.chmod(0o600)
    env = {"OPENCKPT_UPSTREAM": upstream.url, "OPENCKPT_UPSTREAM_TOKEN_FILE": str(token_file)}
    server = start_hub(tmp_path / "data", env=env)
    try:  # the admin's token serves every user of this hub: their choice, as for a proxy's credentials
        assert HfApi(endpoint=server.url).model_info(repo).sha == sha
    finally:
        server.stop()


def test_a_gated_upstream_repo_is_read_with_the_users_own_upstream_token_only(tmp_path: Path) -> None:
    with static_upstream() as up:
        sha = up.add("meta/gated", {"README.md": b"# gated\n", "w.bin": WEIGHTS})
        up.gated["meta/gated"] = "granted-upstream-token"
        server = start_hub(tmp_path / "data", env={"OPENCKPT_UPSTREAM": up.url})
        try:
            alice, bob = server.create_user("alice"), server.create_user("bob")
            refused = httpx.get(
                f"{server.url}/meta/gated/resolve/main/w.bin", headers={"authorization": f"Bearer {bob}"}
            )
            assert refused.status_code == 403 and refused.headers["x-error-code"] == "GatedRepo", refused.text
            assert "upstream-token" in refused.text
            put = httpx.put(
                f"{server.url}/api/settings/upstream-token",
                json={"token": "granted-upstream-token"},
                headers={"authorization": f"Bearer {alice}"},
            )
            assert put.status_code == 200
            got = hf_hub_download("meta/gated", "w.bin", endpoint=server.url, token=alice, cache_dir=tmp_path / "a")
            assert Path(got).read_bytes() == WEIGHTS and Path(got).parent.name == sha
            for token in (bob, None):  # alice's token is never used for anyone else
                headers = {"authorization": f"Bearer {token}"} if token else {}
                refused = httpx.get(f"{server.url}/meta/gated/resolve/main/w.bin", headers=headers)
                assert refused.status_code in (401, 403) and refused.headers["x-error-code"] == "GatedRepo"
        finally:
            server.stop()
