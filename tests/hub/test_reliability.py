"""Reliability of uploads and of a hub under load, on SQLite and PostgreSQL: a blob becomes visible only once its
sha256 verifies, broken or forged transfers leave no trace, request sizes are bounded, several worker processes
share one database, and 32 concurrent clients lose and corrupt nothing.

The load test runs ``OPENCKPT_LOAD_SECONDS`` (default 60) on each database, with two worker processes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from sqlalchemy import select

from openckpt.digest import git_blob_sha1
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob, LfsPart
from openckpt.hub.services.lfs.transfers import sign
from openckpt.store.local import LocalBlobStore
from tests.hubtools import HubProcess, start_hub
from tests.testdata import opaque_bytes

MAX_COMMIT = 4 << 20
LOAD_SECONDS = float(os.environ.get("OPENCKPT_LOAD_SECONDS", "60"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def workers2(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub of two worker processes on one database, with a small commit size limit (``MAX_COMMIT``) and
    multipart LFS uploads from 6 MiB in parts of 4 MiB."""
    url = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"hub_{uuid.uuid4().hex[:8]}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENCKPT_MAX_COMMIT_BYTES", str(MAX_COMMIT))
        mp.setenv("OPENCKPT_MULTIPART_THRESHOLD", str(6 << 20))
        mp.setenv("OPENCKPT_MULTIPART_CHUNK_SIZE", str(4 << 20))
        server = start_hub(tmp_path_factory.mktemp("hub2") / "data", url, workers=2)
    yield server
    server.stop()
    assert_clean_log(server)


def text(size: int) -> bytes:
    """``size`` bytes of random text: a regular (non-LFS) file."""
    return base64.b64encode(os.urandom(size))[:size]


def tensors(size: int) -> bytes:
    """A safetensors file of about ``size`` bytes of random float32 weights: an LFS file the hub's scanner passes."""
    import numpy as np
    from safetensors.numpy import save

    return save({"w": np.frombuffer(os.urandom(size // 4 * 4), dtype=np.float32).copy()})


def assert_clean_log(hub: HubProcess) -> None:
    log = hub.log.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-6000:]


def new_repo(hub: HubProcess) -> str:
    repo_id: str = HfApi(endpoint=hub.url, token=hub.token).create_repo(f"r{uuid.uuid4().hex[:10]}").repo_id
    return repo_id


def upload_href(hub: HubProcess, repo: str, data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    r = httpx.post(f"{hub.url}/{repo}.git/info/lfs/objects/batch", json=batch,
                   headers={"authorization": f"Bearer {hub.token}"})  # fmt: skip
    r.raise_for_status()
    href: str = r.json()["objects"][0]["actions"]["upload"]["href"]
    return href


def lfs_commit(hub: HubProcess, repo: str, data: bytes, path: str = "w.bin") -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": "add"}},
             {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": hashlib.sha256(data).hexdigest(),
                                          "size": len(data)}}]  # fmt: skip
    headers = {"authorization": f"Bearer {hub.token}", "content-type": "application/x-ndjson"}
    return httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content="\n".join(map(json.dumps, lines)),
                      headers=headers)  # fmt: skip


def blob_row(hub: HubProcess, sha256: str) -> Blob | None:
    db = Database(hub.database_url)
    try:
        with db.read() as session:
            return session.get(Blob, sha256)
    finally:
        db.dispose()


def store_path(hub: HubProcess, sha256: str) -> Path:
    return hub.data_dir / "store" / "blobs" / sha256[:2] / sha256[2:4] / sha256


def temp_files(hub: HubProcess) -> list[Path]:
    return list((hub.data_dir / "store" / "tmp").iterdir())


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def assert_invisible(hub: HubProcess, repo: str, data: bytes) -> None:
    """No Blob row, no file in the store, no temp file left, and a commit that names the blob is a 400."""
    sha256 = hashlib.sha256(data).hexdigest()
    eventually(lambda: not temp_files(hub), "the temp file of the upload is removed")
    assert blob_row(hub, sha256) is None
    assert not store_path(hub, sha256).exists()
    r = lfs_commit(hub, repo, data)
    assert r.status_code == 400, r.text
    assert "w.bin" not in HfApi(endpoint=hub.url, token=hub.token).list_repo_files(repo)


def raw_request(url: str, head: str, body: bytes, *, then_close: bool) -> bytes:
    """Send ``head`` (request line and headers) and ``body`` over a plain socket; the response, or b"" if
    ``then_close`` (the client goes away without waiting)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(head.encode() + body)
        if then_close:
            time.sleep(0.3)
            return b""
        chunks = []  # until the server closes the connection (the request says ``Connection: close``)
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def put_head(href: str, length: int) -> str:
    parts = urlsplit(href)
    return (f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n")  # fmt: skip


# --------------------------------------------------------------------------------------------- uploads


def test_upload_cut_off_mid_body_leaves_nothing(hub: HubProcess) -> None:
    repo = new_repo(hub)
    data = opaque_bytes(24 << 20)
    href = upload_href(hub, repo, data)
    raw_request(href, put_head(href, len(data)), data[: len(data) // 2], then_close=True)
    assert_invisible(hub, repo, data)
    # the same object uploads fine afterwards, and only then can be committed
    assert httpx.put(href, content=data, timeout=60).status_code == 200
    assert blob_row(hub, hashlib.sha256(data).hexdigest()) is not None
    assert lfs_commit(hub, repo, data).status_code == 200
    assert not temp_files(hub)


def test_upload_of_other_bytes_is_rejected(hub: HubProcess) -> None:
    repo = new_repo(hub)
    data = opaque_bytes(5 << 20)
    href = upload_href(hub, repo, data)
    wrong = bytearray(data)
    wrong[-1] ^= 1
    r = httpx.put(href, content=bytes(wrong), timeout=60)
    assert r.status_code == 400 and "sha256" in r.json()["error"], r.text
    assert_invisible(hub, repo, data)
    assert not store_path(hub, hashlib.sha256(wrong).hexdigest()).exists()


def test_upload_longer_or_shorter_than_announced_is_rejected(hub: HubProcess) -> None:
    repo = new_repo(hub)
    data = opaque_bytes(1 << 20)
    href = upload_href(hub, repo, data)
    longer = raw_request(href, put_head(href, len(data) + 4096), data + os.urandom(4096), then_close=False)
    assert longer.startswith(b"HTTP/1.1 400") and b"exceeds the announced" in longer, longer[:500]
    shorter = httpx.put(href, content=data[:-1], timeout=60)
    assert shorter.status_code == 400 and "expected" in shorter.json()["error"], shorter.text
    assert_invisible(hub, repo, data)


def test_signed_urls(hub: HubProcess) -> None:
    repo = new_repo(hub)
    data = opaque_bytes(4096)
    href = upload_href(hub, repo, data)
    base, _, query = href.partition("?")
    path = urlsplit(base).path
    secret = hub.secret()
    origin = base[: -len(path)]
    sig = dict(p.split("=", 1) for p in query.split("&"))["sig"]
    forged = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    other_size = path.rsplit("/", 1)[0] + f"/{len(data) + 1}"
    refused = {
        "unsigned": base,
        "expired": origin + sign(secret, "PUT", path, -10),
        "forged signature": href.replace(sig, forged),
        "signed by another key": origin + sign(os.urandom(32), "PUT", path, 600),
        "signed for another method": origin + sign(secret, "POST", path, 600),
        "signature of another size": f"{origin}{other_size}?{query}",
    }
    for what, url in refused.items():
        r = httpx.put(url, content=data)
        assert r.status_code == 403, (what, r.status_code, r.text)
    assert_invisible(hub, repo, data)
    assert httpx.put(href, content=data).status_code == 200


# --------------------------------------------------------------------------------------------- sizes, workers


def test_commit_body_is_bounded(workers2: HubProcess) -> None:
    repo = new_repo(workers2)
    auth = {"authorization": f"Bearer {workers2.token}", "content-type": "application/x-ndjson"}
    url = f"{workers2.url}/api/models/{repo}/commit/main"
    content = base64.b64encode(b"x" * (MAX_COMMIT // 2)).decode()
    line = json.dumps({"key": "file", "value": {"path": "a.txt", "encoding": "base64", "content": content}})
    body = (json.dumps({"key": "header", "value": {"summary": "big"}}) + "\n" + line + "\n" + line).encode()
    assert len(body) > MAX_COMMIT
    declared = httpx.post(url, content=body, headers=auth, timeout=60)
    assert declared.status_code == 413, declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds on the bytes that arrive
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    streamed = httpx.post(url, content=chunks(), headers=auth, timeout=60)
    assert streamed.status_code == 413, streamed.text
    files = HfApi(endpoint=workers2.url, token=workers2.token).list_repo_files(repo)
    assert "a.txt" not in files


def test_multipart_upload(workers2: HubProcess, tmp_path: Path) -> None:
    """The parts go to the store and their rows to the database; once joined, neither is left."""
    api = HfApi(endpoint=workers2.url, token=workers2.token)
    repo = new_repo(workers2)
    store = LocalBlobStore(workers2.data_dir / "store")
    before = set(store.keys())
    data = tensors(9 << 20)  # three parts
    (tmp_path / "big.safetensors").write_bytes(data)
    api.upload_file(path_or_fileobj=tmp_path / "big.safetensors", path_in_repo="big.safetensors", repo_id=repo)
    got = hf_hub_download(repo, "big.safetensors", endpoint=workers2.url, token=workers2.token,
                          cache_dir=tmp_path / "c")  # fmt: skip
    assert hashlib.sha256(Path(got).read_bytes()).digest() == hashlib.sha256(data).digest()
    db = Database(workers2.database_url)
    try:
        with db.read() as session:
            assert session.scalars(select(LfsPart)).first() is None
            new = set(store.keys()) - before
            assert hashlib.sha256(data).hexdigest() in new
            assert set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(new)))) == new  # no part is left
    finally:
        db.dispose()
    assert not (workers2.data_dir / "multipart").exists()


def test_two_workers_share_one_database(workers2: HubProcess, tmp_path: Path) -> None:
    """Concurrent uploads and commits spread over both worker processes; all of them land."""
    api = HfApi(endpoint=workers2.url, token=workers2.token)
    repo = new_repo(workers2)
    files = {f"f{i}.safetensors": tensors(1000 + i * 4096) for i in range(0, 24, 2)}
    files.update({f"f{i}.txt": text(1000 + i * 4096) for i in range(1, 24, 2)})

    def upload(item: tuple[str, bytes]) -> None:
        api.upload_file(path_or_fileobj=item[1], path_in_repo=item[0], repo_id=repo)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(upload, files.items()))
    entries = {e.path: e for e in api.list_repo_tree(repo, recursive=True)}
    for path, data in files.items():
        got = httpx.get(
            f"{workers2.url}/{repo}/resolve/main/{path}", headers={"authorization": f"Bearer {workers2.token}"}
        )
        assert got.content == data, path
        entry: Any = entries[path]
        assert entry.size == len(data)
    assert len(api.list_repo_commits(repo)) == len(files) + 1
    assert workers2.process is not None
    assert len(worker_processes(workers2.process.pid)) == 2


def worker_processes(parent: int) -> list[int]:
    """Pids of the uvicorn workers (multiprocessing children) of ``parent``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(pid))
    return found


# --------------------------------------------------------------------------------------------- load


@dataclass
class Ledger:
    """What the clients of the load test have uploaded (confirmed commits only), and what went wrong."""

    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo -> path -> content
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def pick(self, rng: random.Random) -> tuple[str, str, bytes] | None:
        with self.lock:
            repos = [r for r, fs in self.files.items() if fs]
            if not repos:
                return None
            repo = rng.choice(repos)
            path = rng.choice(list(self.files[repo]))
            return repo, path, self.files[repo][path]


def load_client(hub: HubProcess, repos: list[str], ledger: Ledger, n: int, deadline: float, cache: Path) -> None:
    rng = random.Random(n)
    api = HfApi(endpoint=hub.url, token=hub.token)
    auth = {"authorization": f"Bearer {hub.token}"}
    home = repos[n % len(repos)]
    serial = 0
    with httpx.Client(timeout=120, headers=auth) as http:
        while time.monotonic() < deadline:
            action = rng.random()
            try:
                if action < 0.3:
                    serial += 1
                    lfs = rng.random() < 0.3
                    path = f"c{n}/f{serial}.safetensors" if lfs else f"c{n}/f{serial}.txt"
                    data = tensors(rng.randint(256 << 10, 2 << 20)) if lfs else text(rng.randint(1, 64 << 10))
                    api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=home)
                    with ledger.lock:
                        ledger.files.setdefault(home, {})[path] = data
                    ledger.count("upload lfs" if lfs else "upload")
                elif action < 0.65:
                    picked = ledger.pick(rng)
                    if picked is None:
                        continue
                    repo, path, data = picked
                    if rng.random() < 0.5:
                        got = Path(hf_hub_download(repo, path, endpoint=hub.url, token=hub.token, cache_dir=cache))
                        body = got.read_bytes()
                    else:
                        r = http.get(f"{hub.url}/{repo}/resolve/main/{path}")
                        r.raise_for_status()
                        body = r.content
                    if hashlib.sha256(body).digest() != hashlib.sha256(data).digest():
                        raise AssertionError(f"{repo}/{path}: downloaded bytes differ from the uploaded ones")
                    ledger.count("download")
                else:
                    repo = rng.choice(repos)
                    with ledger.lock:
                        known = dict(ledger.files.get(repo, {}))
                    if rng.random() < 0.5:
                        info = api.model_info(repo, files_metadata=True)
                        listed = {s.rfilename: s.size for s in info.siblings or []}
                    else:
                        listed = {e.path: e.size for e in api.list_repo_tree(repo, recursive=True)
                                  if getattr(e, "size", None) is not None}  # fmt: skip
                    lost = [p for p, d in known.items() if listed.get(p) != len(d)]
                    if lost:
                        raise AssertionError(f"{repo}: committed files missing or of the wrong size: {lost[:5]}")
                    ledger.count("metadata")
            except Exception as e:
                with ledger.lock:
                    ledger.errors.append(f"client {n}: {type(e).__name__}: {e}"[:2000])


@pytest.mark.slow
def test_load_32_clients(workers2: HubProcess, tmp_path: Path) -> None:
    repos = [new_repo(workers2) for _ in range(4)]
    ledger = Ledger()
    deadline = time.monotonic() + LOAD_SECONDS
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(load_client, workers2, repos, ledger, n, deadline, tmp_path / f"cache{n}")
                   for n in range(32)]  # fmt: skip
        for f in futures:
            f.result()
    assert not ledger.errors, f"{len(ledger.errors)} errors, first ones:\n" + "\n".join(ledger.errors[:10])
    assert all(ledger.counts.get(k, 0) > 0 for k in ("upload", "upload lfs", "download", "metadata")), ledger.counts
    # every file uploaded is in its repo with its exact content
    api = HfApi(endpoint=workers2.url, token=workers2.token)
    with httpx.Client(timeout=120, headers={"authorization": f"Bearer {workers2.token}"}) as http:
        for repo, files in ledger.files.items():
            tree = {e.path: e for e in api.list_repo_tree(repo, recursive=True)}
            for path, data in files.items():
                entry: Any = tree.get(path)
                assert entry is not None, f"{repo}/{path} was committed and is lost"
                if entry.lfs is not None:
                    assert entry.lfs.sha256 == hashlib.sha256(data).hexdigest(), path
                else:
                    assert entry.blob_id == git_blob_sha1(data), path
                got = http.get(f"{workers2.url}/{repo}/resolve/main/{path}")
                assert got.status_code == 200 and got.content == data, path
    assert_clean_log(workers2)
