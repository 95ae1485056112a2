"""Hubs on object storage and scale-out: one hub on S3 (a real ``moto`` server) with SQLite passes the round trip of the
stock client; two separate hub processes (own ports, own data dirs) on one PostgreSQL database and one bucket serve the
same repos: what one accepts the other serves, URLs one signs the other honours, both take the same bytes at once, and
killing one of them (SIGKILL) during a bounded load loses and corrupts nothing.

The fault test runs ``OPENCKPT_FAULT_SECONDS`` (default 20) of load."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob, LfsPart
from openckpt.store.url import open_store
from tests import zygote
from tests.hub.storagetools import commit_lfs
from tests.hubtools import HubProcess, Postgres, S3Server, free_port, shared_secret, start_hub, wait_for
from tests.testdata import opaque_bytes

PART = 5 << 20
"""The S3 part size of these hubs: files above it go to the bucket as multipart uploads."""
FAULT_SECONDS = float(os.environ.get("OPENCKPT_FAULT_SECONDS", "20"))
T = TypeVar("T")


def assert_clean_log(hub: HubProcess) -> None:
    log = hub.log.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-6000:]


def bucket_blobs(s3: S3Server, prefix: str) -> dict[str, bytes]:
    """Every blob in the bucket under ``prefix``, by name."""
    client = s3.client()
    found = {}
    for key in s3.keys(f"{prefix}/blobs/"):
        found[key.rsplit("/", 1)[1]] = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    return found


def files_in(store_root: Path) -> list[Path]:
    return [p for p in store_root.rglob("*") if p.is_file()] if store_root.exists() else []


# --------------------------------------------------------------------------------------------- one hub on S3


def test_hub_on_s3(s3: S3Server, tmp_path: Path, unique: str) -> None:
    """SQLite + S3: upload and download with the stock client, ranged reads streamed from the bucket, and the bytes in
    the bucket, not in the data dir."""
    prefix = f"one{uuid.uuid4().hex[:8]}"
    hub = start_hub(tmp_path / "data", storage_url=s3.storage_url(prefix) + f"&part_size={PART}")
    try:
        api = HfApi(endpoint=hub.url, token=hub.token)
        repo = api.create_repo(f"admin/{unique}").repo_id
        folder = tmp_path / "src"
        folder.mkdir()
        (folder / "config.json").write_text('{"a": 1}')
        payload = opaque_bytes(2 * PART + 12345)
        (folder / "weights.bin").write_bytes(payload)
        api.upload_folder(folder_path=folder, repo_id=repo)
        got = hf_hub_download(repo, "weights.bin", endpoint=hub.url, token=hub.token, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == payload
        url, auth = f"{hub.url}/{repo}/resolve/main/weights.bin", {"authorization": f"Bearer {hub.token}"}
        ranged = httpx.get(url, headers={**auth, "Range": f"bytes={PART - 10}-{PART + 9}"})
        assert ranged.status_code == 206 and ranged.content == payload[PART - 10 : PART + 10]
        head = httpx.head(url, headers=auth)
        assert head.status_code == 200 and int(head.headers["content-length"]) == len(payload)
        stored = bucket_blobs(s3, prefix)
        assert stored[hashlib.sha256(payload).hexdigest()] == payload
        assert all(hashlib.sha256(data).hexdigest() == name for name, data in stored.items())
        assert not files_in(tmp_path / "data" / "store" / "blobs")
        assert s3.keys(f"{prefix}/tmp/") == [] and s3.pending_uploads(f"{prefix}/") == []
    finally:
        hub.stop()
    assert_clean_log(hub)


def test_serve_command_with_storage_url_and_workers(s3: S3Server, tmp_path: Path, unique: str) -> None:
    """``openckpt serve --storage-url … --workers 2``: every worker stores in the bucket; a missing bucket is refused
    before the server starts."""
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    port = free_port()
    cmd = [sys.executable, "-m", "openckpt.cli.app", "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port),
           "--workers", "2", "--log-level", "warning", "--storage-url", s3.storage_url(prefix)]  # fmt: skip
    missing = [*cmd[:-1], f"s3://no-such-bucket/x?endpoint_url={s3.endpoint}"]
    refused = zygote.run(missing, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 5 and "'no-such-bucket' does not exist" in refused.stderr, refused.stderr
    env = {**os.environ, "COLUMNS": "200"}
    process = zygote.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert process.stdout is not None
        token = ""
        for line in process.stdout:  # the first-start panel comes before the server starts
            found = re.search(r"export HF_TOKEN=(oc_\S+)", line)
            if found:
                token = found.group(1)
                break
        assert token, "no admin token printed"
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/api/models", timeout=90)
        api = HfApi(endpoint=url, token=token)
        repo = api.create_repo(unique).repo_id
        payloads = [opaque_bytes(10_000 + n) for n in range(6)]
        with ThreadPoolExecutor(3) as pool:  # over both workers
            list(pool.map(lambda n: api.upload_file(path_or_fileobj=payloads[n], path_in_repo=f"{n}.bin",
                                                    repo_id=repo), range(6)))  # fmt: skip
        assert {hashlib.sha256(p).hexdigest() for p in payloads} <= set(bucket_blobs(s3, prefix))
        assert not files_in(tmp_path / "data" / "store" / "blobs")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_configured_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``OPENCKPT_SECRET`` is the hub's key: URLs signed with it are honoured, with another key refused."""
    from openckpt.hub.services.lfs.transfers import sign

    secret = "k" * 40
    monkeypatch.setenv("OPENCKPT_SECRET", secret)
    hub = start_hub(tmp_path / "data")
    try:
        data = opaque_bytes(1000)
        path = f"/api/lfs/upload/{hashlib.sha256(data).hexdigest()}/{len(data)}"
        assert httpx.put(hub.url + sign(secret.encode(), "PUT", path, 600), content=data).status_code == 200
        assert httpx.put(hub.url + sign(b"o" * 40, "PUT", path, 600), content=data).status_code == 403
        assert not (hub.data_dir / "secret.key").exists()  # a configured secret is not copied beside the data
    finally:
        hub.stop()


# --------------------------------------------------------------------------------------------- two servers


def test_two_servers_start_together_on_a_new_database(postgres: Postgres, s3: S3Server, tmp_path: Path) -> None:
    """Both migrate the same empty database at the same moment: one migrates, one admin is created, both serve."""
    database = postgres.create_database(f"start_{uuid.uuid4().hex[:8]}")
    storage = s3.storage_url(f"start{uuid.uuid4().hex[:8]}")
    secret = shared_secret(tmp_path)  # the servers of one hub share its signing secret
    folders = [tmp_path / n / "data" for n in "ab"]
    with ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(start_hub, f, database, storage_url=storage, env=secret) for f in folders]
        servers = [f.result() for f in starting]
    try:
        assert sorted(bool(s.token) for s in servers) == [False, True]
        token = next(s.token for s in servers if s.token)
        for server in servers:
            assert HfApi(endpoint=server.url, token=token).whoami()["name"] == "admin"
        assert servers[0].secret() == servers[1].secret()
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert_clean_log(server)


@dataclass
class Pair:
    """Two hub processes on one PostgreSQL database and one bucket prefix."""

    servers: list[HubProcess]
    database_url: str
    storage_url: str
    prefix: str
    token: str
    env: dict[str, str]
    """What gives both servers the same signing secret (``OPENCKPT_SECRET_FILE``)."""

    def restart(self, index: int) -> None:
        old = self.servers[index]
        port = urlsplit(old.url).port
        self.servers[index] = start_hub(
            old.data_dir, self.database_url, port=port, storage_url=self.storage_url, env=self.env
        )


@pytest.fixture(scope="module")
def pair(postgres: Postgres, s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    database = postgres.create_database(f"scale_{uuid.uuid4().hex[:8]}")
    prefix = f"pair{uuid.uuid4().hex[:8]}"
    storage = s3.storage_url(prefix) + f"&part_size={PART}"
    root = tmp_path_factory.mktemp("scale")
    secret = shared_secret(root)
    first = start_hub(root / "a" / "data", database, storage_url=storage, env=secret)
    second = start_hub(root / "b" / "data", database, storage_url=storage, env=secret)
    assert first.token and not second.token  # the second server found the first one's admin in the database
    both = Pair([first, second], database, storage, prefix, first.token, secret)
    yield both
    for server in both.servers:
        server.stop()


def api_of(pair: Pair, index: int) -> HfApi:
    return HfApi(endpoint=pair.servers[index].url, token=pair.token)


def test_upload_through_one_download_through_the_other(pair: Pair, s3: S3Server, tmp_path: Path) -> None:
    repo = api_of(pair, 0).create_repo(f"r{uuid.uuid4().hex[:10]}").repo_id
    folder = tmp_path / "src"
    folder.mkdir()
    files = {"config.json": b'{"a": 1}', "small.bin": opaque_bytes(3000), "large.bin": opaque_bytes(PART + 777)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    api_of(pair, 0).upload_folder(folder_path=folder, repo_id=repo)
    other = pair.servers[1]
    assert set(api_of(pair, 1).list_repo_files(repo)) == {".gitattributes", *files}
    for name, data in files.items():
        got = hf_hub_download(repo, name, endpoint=other.url, token=pair.token, cache_dir=tmp_path / "c")
        assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest(), name
    stored = bucket_blobs(s3, pair.prefix)
    assert hashlib.sha256(files["large.bin"]).hexdigest() in stored
    for server in pair.servers:
        assert not files_in(server.data_dir / "store" / "blobs")


def test_urls_signed_by_one_server_work_on_the_other(pair: Pair) -> None:
    """One signing key for the hub: an LFS upload URL handed out by one server is honoured by the other."""
    first, second = pair.servers
    repo = api_of(pair, 0).create_repo(f"r{uuid.uuid4().hex[:10]}").repo_id
    data = opaque_bytes(4096)
    batch = {"operation": "upload", "transfers": ["basic"],
             "objects": [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}]}  # fmt: skip
    r = httpx.post(f"{first.url}/{repo}.git/info/lfs/objects/batch", json=batch,
                   headers={"authorization": f"Bearer {pair.token}"})  # fmt: skip
    href: str = r.json()["objects"][0]["actions"]["upload"]["href"]
    assert href.startswith(first.url)
    moved = second.url + href[len(first.url) :]
    assert httpx.put(moved, content=data, timeout=60).status_code == 200
    assert first.secret() == second.secret()
    tampered = moved.replace("sig=", "sig=0")
    assert httpx.put(tampered, content=data, timeout=60).status_code == 403


def test_same_content_through_both_at_once(pair: Pair, s3: S3Server, tmp_path: Path) -> None:
    """8 threads upload the same three files at the same time, alternating servers; every commit lands, each content
    is stored once, and every file reads back through the other server."""
    contents = [opaque_bytes(200_000), opaque_bytes(PART + 4321), b"the same small text\n"]
    names = ["a.bin", "b.bin", "c.txt"]
    repos = [api_of(pair, 0).create_repo(f"r{uuid.uuid4().hex[:10]}").repo_id for _ in range(8)]
    barrier = threading.Barrier(8)

    def upload(n: int) -> None:
        api = api_of(pair, n % 2)
        barrier.wait(timeout=60)
        for name, data in zip(names, contents, strict=True):
            api.upload_file(path_or_fileobj=data, path_in_repo=name, repo_id=repos[n])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, range(8)))
    auth = {"authorization": f"Bearer {pair.token}"}
    for n, repo in enumerate(repos):
        other = pair.servers[(n + 1) % 2]
        for name, data in zip(names, contents, strict=True):
            got = httpx.get(f"{other.url}/{repo}/resolve/main/{name}", headers=auth, timeout=120)
            assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
    stored = bucket_blobs(s3, pair.prefix)
    for data in contents[:2]:  # LFS files: one object each, whatever the number of uploads
        assert stored[hashlib.sha256(data).hexdigest()] == data
    assert s3.pending_uploads(f"{pair.prefix}/") == []
    for server in pair.servers:
        assert_clean_log(server)


def test_multipart_parts_and_completion_through_different_servers(
    postgres: Postgres, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An LFS multipart upload whose parts, a part's re-upload and the completion reach different servers (as behind a
    load balancer): parts live in the shared bucket and database, any server joins them, and nothing of them is left."""
    chunk = 3 << 20
    monkeypatch.setenv("OPENCKPT_MULTIPART_THRESHOLD", str(4 << 20))
    monkeypatch.setenv("OPENCKPT_MULTIPART_CHUNK_SIZE", str(chunk))
    database = postgres.create_database(f"parts_{uuid.uuid4().hex[:8]}")
    prefix = f"parts{uuid.uuid4().hex[:8]}"
    storage = s3.storage_url(prefix) + f"&part_size={PART}"
    secret = shared_secret(tmp_path)
    servers = [start_hub(tmp_path / n / "data", database, storage_url=storage, env=secret) for n in "ab"]
    first, second = servers
    try:
        repo = HfApi(endpoint=first.url, token=first.token).create_repo(f"r{uuid.uuid4().hex[:10]}").repo_id
        data = opaque_bytes(3 * chunk + 4321)  # four parts
        sha256, auth = hashlib.sha256(data).hexdigest(), {"authorization": f"Bearer {first.token}"}
        batch = {"operation": "upload", "transfers": ["basic", "multipart"],
                 "objects": [{"oid": sha256, "size": len(data)}]}  # fmt: skip
        r = httpx.post(f"{first.url}/{repo}.git/info/lfs/objects/batch", json=batch, headers=auth)
        assert r.status_code == 200, r.text
        actions = r.json()["objects"][0]["actions"]
        header = actions["upload"]["header"]
        urls = {int(n): url for n, url in header.items() if n != "chunk_size"}
        assert int(header["chunk_size"]) == chunk and sorted(urls) == [1, 2, 3, 4]

        def on(server: HubProcess, url: str) -> str:
            assert url.startswith(first.url)
            return server.url + url[len(first.url) :]

        wrong = httpx.put(on(second, urls[2]), content=opaque_bytes(chunk), timeout=60)  # replaced below
        assert wrong.status_code == 200, wrong.text
        parts = []
        for number, url in sorted(urls.items()):  # alternating servers: 1 and 3 on the second, 2 and 4 on the first
            piece = data[(number - 1) * chunk : number * chunk]
            sent = httpx.put(on(servers[number % 2], url), content=piece, timeout=60)
            assert sent.status_code == 200, sent.text
            assert sent.headers["etag"] == f'"{hashlib.md5(piece).hexdigest()}"'
            parts.append({"partNumber": number, "etag": sent.headers["etag"]})
        complete = actions["upload"]["href"]
        early = httpx.post(on(first, complete), json={"oid": sha256, "parts": [*parts, {"partNumber": 5}]}, timeout=60)
        assert early.status_code == 400 and "part 5 was not uploaded" in early.text, early.text
        done = httpx.post(on(second, complete), json={"oid": sha256, "parts": parts}, timeout=120)
        assert done.status_code == 200, done.text
        again = httpx.post(on(first, complete), json={"oid": sha256, "parts": parts}, timeout=120)  # a retry
        assert again.status_code == 200, again.text
        verified = httpx.post(on(second, actions["verify"]["href"]), json={"oid": sha256, "size": len(data)},
                              headers=auth)  # fmt: skip
        assert verified.status_code == 200, verified.text
        commit_lfs(first, repo, "big.bin", sha256, len(data))
        got = hf_hub_download(repo, "big.bin", endpoint=second.url, token=first.token, cache_dir=tmp_path / "c")
        assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == sha256
        db = Database(database)
        try:
            with db.read() as session:
                assert session.scalars(select(LfsPart)).first() is None
                recorded = set(session.scalars(select(Blob.sha256)))
        finally:
            db.dispose()
        stored = bucket_blobs(s3, prefix)
        assert stored[sha256] == data and set(stored) <= recorded  # the parts, the replaced one too, are gone
        assert s3.keys(f"{prefix}/tmp/") == [] and s3.pending_uploads(f"{prefix}/") == []
        for server in servers:
            assert not (server.data_dir / "multipart").exists()
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert_clean_log(server)


# --------------------------------------------------------------------------------------------- kill one of two


@dataclass
class Ledger:
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1


def with_failover(pair: Pair, rng: random.Random, ledger: Ledger, action: Callable[[int], T]) -> T:
    """``action(server index)`` on a random server; on failure retried on the other one (a few rounds, as a client
    behind a load balancer would)."""
    first = rng.randrange(2)
    error: Exception | None = None
    for attempt in range(8):
        try:
            return action((first + attempt) % 2)
        except Exception as e:
            error = e
            ledger.count("retried")
            time.sleep(0.3)
    assert error is not None
    raise error


def fault_client(pair: Pair, repo: str, ledger: Ledger, n: int, deadline: float, cache: Path) -> None:
    rng = random.Random(n)
    serial = 0
    while time.monotonic() < deadline:
        try:
            if rng.random() < 0.5 or not ledger.files:
                serial += 1
                large = rng.random() < 0.15
                path = f"c{n}/f{serial}.bin"
                data = opaque_bytes(PART + rng.randint(1, 1 << 20) if large else rng.randint(1000, 400_000))

                def upload(i: int, path: str = path, data: bytes = data) -> None:
                    api_of(pair, i).upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)

                with_failover(pair, rng, ledger, upload)
                with ledger.lock:
                    ledger.files[(repo, path)] = data
                ledger.count("upload")
            else:
                with ledger.lock:
                    (_, path), data = rng.choice(list(ledger.files.items()))

                def download(i: int, path: str = path) -> bytes:
                    fresh = cache / uuid.uuid4().hex  # a new cache each time: always a real download
                    got = hf_hub_download(repo, path, endpoint=pair.servers[i].url, token=pair.token, cache_dir=fresh)
                    body = Path(got).read_bytes()
                    shutil.rmtree(fresh, ignore_errors=True)
                    return body

                body = with_failover(pair, rng, ledger, download)
                if hashlib.sha256(body).digest() != hashlib.sha256(data).digest():
                    raise AssertionError(f"{path}: downloaded bytes differ from the uploaded ones")
                ledger.count("download")
        except Exception as e:
            with ledger.lock:
                ledger.errors.append(f"client {n}: {type(e).__name__}: {e}"[:2000])


@pytest.mark.slow
def test_kill_one_of_two_under_load(pair: Pair, s3: S3Server, tmp_path: Path) -> None:
    repo = api_of(pair, 0).create_repo(f"r{uuid.uuid4().hex[:10]}").repo_id
    ledger = Ledger()
    start = time.monotonic()
    deadline = start + FAULT_SECONDS
    kills = 0
    with ThreadPoolExecutor(6) as pool:
        clients = [pool.submit(fault_client, pair, repo, ledger, n, deadline, tmp_path / f"cache{n}") for n in range(6)]
        for at in (0.25, 0.6):  # kill the second server twice, a quarter and 60% into the load; restart it each time
            time.sleep(max(0.0, start + at * FAULT_SECONDS - time.monotonic()))
            victim = pair.servers[1]
            assert victim.process is not None
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait()
            kills += 1
            time.sleep(1.0)
            pair.restart(1)
        for client in clients:
            client.result()
    assert kills == 2
    assert not ledger.errors, f"{len(ledger.errors)} errors, first ones:\n" + "\n".join(ledger.errors[:10])
    assert ledger.counts.get("upload", 0) > 0 and ledger.counts.get("download", 0) > 0, ledger.counts
    # nothing lost: every confirmed upload reads back exactly, through each server
    auth = {"authorization": f"Bearer {pair.token}"}
    for server in pair.servers:
        listed = set(api_of(pair, pair.servers.index(server)).list_repo_files(repo))
        for (_, path), data in ledger.files.items():
            assert path in listed, f"{path} was committed and is lost"
            got = httpx.get(f"{server.url}/{repo}/resolve/main/{path}", headers=auth, timeout=120)
            assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
    # nothing corrupt: every object in the bucket is complete (its bytes hash to its name)
    for name, data in bucket_blobs(s3, pair.prefix).items():
        assert hashlib.sha256(data).hexdigest() == name
    # what the killed server left half-done (multipart uploads, temp objects) goes in a sweep; the load is over
    orphans = open_store(pair.storage_url, tmp_path).sweep(older_than=0)
    assert s3.pending_uploads(f"{pair.prefix}/") == [] and s3.keys(f"{pair.prefix}/tmp/") == []
    print(f"fault test: {ledger.counts}, {len(ledger.files)} files, {kills} kills, {orphans} orphans swept")
