"""Xet on a scaled-out hub: two servers (one of two workers) on one PostgreSQL and one S3 bucket. A client uploads
through one server and reads through the other (CAS tokens and transfer URLs are stateless, xorbs live in the
bucket); a new version through the second server dedups against the first's xorbs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from openckpt.hub.db.engine import Database
from openckpt.hub.services.stored_files import XetFileStore
from openckpt.hub.services.xet.ingest import ingest
from openckpt.hub.settings import Settings
from openckpt.store.url import open_store
from tests.hub.test_xet_compat import _checkpoint, run_client, stored_xorb_bytes, write_folder, xet_env
from tests.hubtools import HubProcess, Postgres, S3Server, shared_secret, start_hub
from tests.testdata import opaque_bytes

STORAGE: dict[str, str] = {}
"""Hub URL → its storage URL."""


def _storage_url(server: HubProcess) -> str:
    return STORAGE[server.url]


@pytest.fixture(scope="module")
def servers(postgres: Postgres, s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[HubProcess]]:
    database = postgres.create_database(f"xet_{uuid.uuid4().hex[:8]}")
    storage = s3.storage_url(f"xet{uuid.uuid4().hex[:8]}")
    root = tmp_path_factory.mktemp("xet-scale")
    secret = shared_secret(root)  # every server of one hub signs with the same key
    first = start_hub(root / "one", database, workers=2, storage_url=storage, env=secret)
    started = [first]
    try:
        started.append(start_hub(root / "two", database, storage_url=storage, env=secret))
        STORAGE.update({server.url: storage for server in started})
        yield started
    finally:
        for server in started:
            server.stop()


def test_upload_through_one_server_download_through_the_other(servers: list[HubProcess], tmp_path: Path) -> None:
    one, two = servers
    token = one.token
    tensors = [opaque_bytes(1_500_000) for _ in range(6)]
    v1 = _checkpoint(tensors)
    tensors[1] = opaque_bytes(1_500_000)
    v2 = _checkpoint(tensors)
    write_folder(tmp_path / "v1", {"model.safetensors": v1, "config.json": b'{"a": 1}'})
    write_folder(tmp_path / "v2", {"model.safetensors": v2})
    repo = f"admin/r{uuid.uuid4().hex[:8]}"
    run_client("upload", xet_env(one.url, tmp_path / "a", token), endpoint=one.url, token=token, repo=repo,
               folder=str(tmp_path / "v1"), message="v1 via one")  # fmt: skip
    got = run_client("download", xet_env(two.url, tmp_path / "b", token), endpoint=two.url, token=token, repo=repo,
                     paths=["model.safetensors"], cache=str(tmp_path / "cb"), snapshot=False)  # fmt: skip
    assert got["one"] == {"model.safetensors": hashlib.sha256(v1).hexdigest()}

    before = stored_xorb_bytes(two)
    run_client("upload", xet_env(two.url, tmp_path / "c", token), endpoint=two.url, token=token, repo=repo,
               folder=str(tmp_path / "v2"), message="v2 via two, empty client cache")  # fmt: skip
    assert stored_xorb_bytes(two) - before < len(v2) / 3
    got = run_client("download", xet_env(one.url, tmp_path / "d", token), endpoint=one.url, token=token, repo=repo,
                     paths=["model.safetensors"], cache=str(tmp_path / "cd"), snapshot=False)  # fmt: skip
    assert got["one"] == {"model.safetensors": hashlib.sha256(v2).hexdigest()}
    auth = {"authorization": f"Bearer {token}"}
    ranged = httpx.get(f"{two.url}/{repo}/resolve/main/model.safetensors", headers={**auth, "range": "bytes=100-"})
    assert ranged.status_code == 206 and ranged.content == v2[100:]


def test_ingestion_of_an_lfs_upload_kept_in_the_bucket(servers: list[HubProcess], s3: S3Server, tmp_path: Path) -> None:
    one, two = servers
    data = opaque_bytes(3_000_000)
    sha256 = hashlib.sha256(data).hexdigest()
    api = HfApi(endpoint=one.url, token=one.token)  # Xet is disabled in this process: Git LFS
    repo = api.create_repo(f"admin/r{uuid.uuid4().hex[:8]}").repo_id
    api.create_commit(repo, [CommitOperationAdd("w.bin", data)], commit_message="lfs")
    storage = _storage_url(one)
    db = Database(one.database_url)
    try:
        configured = Settings.from_env(data_dir=tmp_path / "admin", database_url=one.database_url,
                                       public_url=one.url, storage_url=storage)  # fmt: skip
        settings = replace(configured, secret=one.secret())
        blobs = open_store(storage, settings.data_dir)
        assert blobs.exists(sha256) and blobs.local_path(sha256) is None
        report = ingest(db, XetFileStore(blobs, db), settings, sha256s=[sha256])
        assert report.dropped == [sha256] and not blobs.exists(sha256)
    finally:
        db.dispose()
    auth = {"authorization": f"Bearer {one.token}"}
    assert httpx.get(f"{two.url}/{repo}/resolve/main/w.bin", headers=auth).content == data
    got = run_client("download", xet_env(two.url, tmp_path / "x", one.token), endpoint=two.url, token=one.token,
                     repo=repo, paths=["w.bin"], cache=str(tmp_path / "c"), snapshot=False)  # fmt: skip
    assert got["one"] == {"w.bin": sha256}
