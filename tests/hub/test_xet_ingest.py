"""Server-side ingestion: a checkpoint uploaded through Git LFS is chunked into the hub's xorbs (by hf_xet, against
the hub's own CAS) and its whole blob dropped; every client still reads it, and a new version uploaded through Xet
by a client that never saw the first one sends and stores only the changed tensor."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from openckpt.hub.db.engine import Database
from openckpt.hub.services.stored_files import XetFileStore, file_plan, xet_files
from openckpt.hub.services.xet.ingest import ingest
from openckpt.hub.settings import Settings
from openckpt.store.url import open_store
from tests.hub.conftest import Client
from tests.hub.test_xet_compat import RecordingProxy, _checkpoint, run_client, stored_xorb_bytes, write_folder, xet_env
from tests.hub.test_xet_reads import ingesting_hub, wait_for_xet  # noqa: F401 - overrides hub: ingestion on
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes


@pytest.fixture(scope="module")
def proxy(hub: HubProcess) -> Iterator[RecordingProxy]:
    p = RecordingProxy(hub.url)
    yield p
    p.close()


def test_lfs_upload_is_ingested_into_xorbs_and_dedups_with_xet(
    hub: HubProcess, proxy: RecordingProxy, old_client: Client, unique: str, tmp_path: Path
) -> None:
    tensors = [opaque_bytes(1_000_000) for _ in range(8)]
    v1 = _checkpoint(tensors)
    tensors[2] = opaque_bytes(1_000_000)
    v2 = _checkpoint(tensors)
    sha1 = hashlib.sha256(v1).hexdigest()
    api = HfApi(endpoint=hub.url, token=hub.token)  # this process's client has Xet disabled: Git LFS
    repo = api.create_repo(f"admin/{unique}").repo_id
    api.create_commit(repo, [CommitOperationAdd("model.safetensors", v1)], commit_message="through LFS")
    wait_for_xet(f"{hub.url}/{repo}/resolve/main/model.safetensors")  # ingested in the background

    db = Database(hub.database_url)
    try:
        settings = replace(Settings.from_env(data_dir=hub.data_dir, database_url=hub.database_url,
                                             public_url=hub.url), secret=hub.secret())  # fmt: skip
        blobs = open_store(settings.storage_url, settings.data_dir)
        assert not blobs.exists(sha1), "the whole copy is gone: the xorbs hold the file"
        with db.read() as session:
            plan = file_plan(session, xet_files(session, [sha1])[sha1][0])
        assert plan is not None and plan.size == len(v1)
        xorbs = {t.blob_sha256 for t in plan.terms}
        assert len(v1) * 0.95 < sum(blobs.size(x) or 0 for x in xorbs) < len(v1) * 1.05
        again = ingest(db, XetFileStore(blobs, db), settings, sha256s=[sha1])
        assert again.ingested == [] and again.failed == {}, "already backed by xorbs: nothing to do"
    finally:
        db.dispose()

    url = f"{hub.url}/{repo}/resolve/main/model.safetensors"
    head = httpx.head(url)
    assert len(head.headers["x-xet-hash"]) == 64 and int(head.headers["x-linked-size"]) == len(v1)
    assert httpx.get(url).content == v1
    ranged = httpx.get(url, headers={"range": "bytes=3000000-3100000"})
    assert ranged.status_code == 206 and ranged.content == v1[3_000_000:3_100_001]
    for name, python in (("no-xet", sys.executable), ("0.36", str(old_client.python))):
        got = run_client("download", xet_env(hub.url, tmp_path / name, hub.token, xet=False), python,
                         endpoint=hub.url, token=hub.token, repo=repo, paths=["model.safetensors"],
                         cache=str(tmp_path / f"{name}-cache"), snapshot=False)  # fmt: skip
        assert got["one"] == {"model.safetensors": sha1}, name

    # a near-copy through Xet, from a client that never saw v1: global dedup finds v1's chunks
    write_folder(tmp_path / "v2", {"model.safetensors": v2})
    before = stored_xorb_bytes(hub)
    proxy.reset()
    run_client("upload", xet_env(proxy.url, tmp_path / "xet", hub.token), endpoint=proxy.url, token=hub.token,
               repo=f"{repo}-v2", folder=str(tmp_path / "v2"), message="v2 through Xet")  # fmt: skip
    assert proxy.seen("POST", "/cas/v1/shards") == 1
    assert stored_xorb_bytes(hub) - before < len(v2) / 4
    assert proxy.sent < len(v2) / 4
    got = run_client("download", xet_env(hub.url, tmp_path / "reader", hub.token), endpoint=hub.url,
                     token=hub.token, repo=f"{repo}-v2", paths=["model.safetensors"], cache=str(tmp_path / "c"),
                     snapshot=False)  # fmt: skip
    assert got["one"] == {"model.safetensors": hashlib.sha256(v2).hexdigest()}
