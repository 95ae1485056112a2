"""Reads of Xet-backed files: reconstruction from xorbs (every compression scheme, any range, damage detected), and
a Git LFS upload ingested in the background, then read by plain GETs, Range requests and hf_xet, with the garbage
collector and fsck agreeing with the new state."""

from __future__ import annotations

import hashlib
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from openckpt.errors import IntegrityError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob
from openckpt.hub.services import stored_files as cas_files
from openckpt.hub.services.storage.fsck import check
from openckpt.hub.services.storage.gc import collect
from openckpt.hub.services.stored_files import ChunkSpan, FilePlan, Term, read_file
from openckpt.store.local import LocalBlobStore
from openckpt.store.url import open_store
from openckpt.xet.hashes import hash_to_hex
from openckpt.xet.xorb import BG4_LZ4, LZ4, NONE, build_xorb, parse_xorb
from tests import zygote
from tests.hub.test_xet_compat import run_client, xet_env
from tests.hubtools import HubProcess, start_hub
from tests.testdata import opaque_bytes

CHUNK = 64 << 10


@pytest.fixture(scope="module", params=["sqlite", "postgresql"], name="hub")
def ingesting_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """``hub`` with background ingestion on (the hub's default; tests/conftest.py turns it off for the tests that
    check whole blobs). Importing it into a test module overrides ``hub`` there."""
    url = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"hub_{uuid.uuid4().hex[:8]}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENCKPT_XET_INGEST", "1")
        server = start_hub(tmp_path_factory.mktemp("hub") / "data", url)
    yield server
    server.stop()


def wait_for_xet(url: str, timeout: float = 120.0) -> httpx.Headers:
    """The HEAD headers of ``url`` once it names a Xet hash (background ingestion done); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        head = httpx.head(url)
        if "x-xet-hash" in head.headers:
            return head.headers
        assert time.monotonic() < deadline, f"{url} was not ingested within {timeout} s"
        time.sleep(0.25)


def _stored_plan(store: LocalBlobStore, parts: list[tuple[bytes, int]]) -> FilePlan:
    """A file made of one xorb per ``(data, scheme)``, cut into 64 KiB chunks (the last one shorter)."""
    terms = []
    for data, scheme in parts:
        body = build_xorb([data[i : i + CHUNK] for i in range(0, len(data), CHUNK)], scheme=scheme)
        xorb = parse_xorb(body)
        writer = store.writer(len(body))
        writer.write(body)
        blob = writer.commit(expected_size=len(body))
        spans = [ChunkSpan(i, hash_to_hex(c.hash), c.size, c.start, c.end) for i, c in enumerate(xorb.chunks)]
        terms.append(Term(xorb.hex, blob, 0, spans))
    return FilePlan("f" * 64, sum(t.size for t in terms), terms)


def test_read_file_rebuilds_any_range_of_every_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cas_files, "READ_BATCH", 3 * CHUNK)  # several pieces per xorb, read ahead
    store = LocalBlobStore(tmp_path / "store")
    repetitive = opaque_bytes(4000) * 100  # compresses: stored as LZ4 / BG4
    parts = [(opaque_bytes(10 * CHUNK + 123), NONE), (repetitive, LZ4), (repetitive[:-7], BG4_LZ4)]
    plan = _stored_plan(store, parts)
    data = b"".join(p for p, _ in parts)
    assert plan.size == len(data) and b"".join(read_file(store, plan)) == data
    assert b"".join(read_file(store, plan, verify=True)) == data
    size = len(data)
    for start, end in [(0, 1), (CHUNK - 1, CHUNK + 1), (5, 10 * CHUNK + 200), (10 * CHUNK, size - 3),
                       (size - 1, size), (len(parts[0][0]), len(parts[0][0]) + 1)]:  # fmt: skip
        assert b"".join(read_file(store, plan, start=start, end=end)) == data[start:end], (start, end)
    reader = read_file(store, plan)
    assert 0 < len(next(reader)) <= 3 * CHUNK
    reader.close()  # abandoned midway: the pieces read ahead are dropped


def test_read_file_refuses_damaged_xorbs(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    data = opaque_bytes(3 * CHUNK)
    plan = _stored_plan(store, [(data, NONE)])
    path = store.local_path(plan.terms[0].blob_sha256)
    assert path is not None
    raw = bytearray(path.read_bytes())
    raw[CHUNK + 8 + 100] ^= 1  # a flipped payload bit: only a hash check sees it
    path.chmod(0o644)
    path.write_bytes(raw)
    with pytest.raises(IntegrityError, match="another hash"):
        b"".join(read_file(store, plan, verify=True))
    raw[0] = 7  # a header that is not the one recorded: always refused
    path.write_bytes(raw)
    with pytest.raises(IntegrityError, match="damaged"):
        b"".join(read_file(store, plan))
    path.write_bytes(raw[: CHUNK // 2])
    with pytest.raises(IntegrityError):
        b"".join(read_file(store, plan))


def test_lfs_upload_is_ingested_then_served_from_xorbs(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    data = opaque_bytes(3 * 2**20 + 777)
    sha256 = hashlib.sha256(data).hexdigest()
    small = opaque_bytes(1000)
    api = HfApi(endpoint=hub.url, token=hub.token)  # Xet disabled in this process: Git LFS
    repo = api.create_repo(f"admin/{unique}").repo_id
    api.create_commit(repo, [CommitOperationAdd("model.bin", data), CommitOperationAdd("tiny.bin", small)],
                      commit_message="through LFS")  # fmt: skip
    url = f"{hub.url}/{repo}/resolve/main/model.bin"
    head = wait_for_xet(url)
    assert len(head["x-xet-hash"]) == 64 and int(head["x-linked-size"]) == len(data)
    assert int(head["content-length"]) == len(data)
    assert "x-xet-hash" not in httpx.head(f"{hub.url}/{repo}/resolve/main/tiny.bin").headers, "below 64 KiB"

    store = open_store("", hub.data_dir)
    db = Database(hub.database_url)
    try:
        assert not store.exists(sha256), "the whole blob is gone: the xorbs hold the file"
        with db.read() as session:
            assert session.get(Blob, sha256) is not None, "its row stays: the file is still stored"

        assert httpx.get(url, timeout=60).content == data
        size = len(data)
        for spec, want in [("bytes=1000-", data[1000:]), ("bytes=65530-65545", data[65530:65546]),
                           ("bytes=-5", data[-5:]), (f"bytes={size - 1}-{size + 10}", data[-1:])]:  # fmt: skip
            got = httpx.get(url, headers={"range": spec})
            assert got.status_code == 206 and got.content == want, spec
        assert httpx.get(url, headers={"range": f"bytes={size}-"}).status_code == 416
        got_small = httpx.get(f"{hub.url}/{repo}/resolve/main/tiny.bin").content
        assert got_small == small

        env = xet_env(hub.url, tmp_path / "xet", hub.token)
        fetched = run_client("download", env, endpoint=hub.url, token=hub.token, repo=repo, paths=["model.bin"],
                             cache=str(tmp_path / "cache"), snapshot=False)  # fmt: skip
        assert fetched["one"] == {"model.bin": sha256}

        report = check(db, store)
        assert report.ok, report.problems
        collect(db, store, grace=timedelta(hours=1))
        assert httpx.get(url, headers={"range": "bytes=0-99"}).content == data[:100]
        assert check(db, store, deep=True).ok
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def hub_without_ingestion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENCKPT_XET_INGEST", "0")
        server = start_hub(tmp_path_factory.mktemp("hub") / "data")
    yield server
    server.stop()


def test_admin_xet_ingest_catches_up(hub_without_ingestion: HubProcess, unique: str) -> None:
    hub = hub_without_ingestion
    data = opaque_bytes(300_000)
    sha256 = hashlib.sha256(data).hexdigest()
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = api.create_repo(f"admin/{unique}").repo_id
    api.create_commit(repo, [CommitOperationAdd("model.bin", data)], commit_message="through LFS")
    url = f"{hub.url}/{repo}/resolve/main/model.bin"
    assert "x-xet-hash" not in httpx.head(url).headers, "ingestion is off on this hub"
    cmd = [sys.executable, "-m", "openckpt.cli.app", "admin", "xet-ingest", "--all", "--json",
           "--data-dir", str(hub.data_dir), "--endpoint", hub.url]  # fmt: skip
    done = zygote.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert sha256 in done.stdout
    assert "x-xet-hash" in httpx.head(url).headers
    assert not open_store("", hub.data_dir).exists(sha256)
    assert httpx.get(url).content == data
    again = zygote.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and '"ingested": []' in again.stdout.replace("\n", "").replace("  ", " ")
