"""Buckets through the stock client against a live hub (SQLite and PostgreSQL): every bucket call of ``HfApi``, the
``hf buckets`` and ``hf sync`` commands, uploads through Xet that deduplicate with everything else, copies by Xet
hash that move no bytes, privacy and org roles, and what garbage collection and storage accounting make of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub._buckets import BucketFile, BucketFolder

from tests.hub.conftest import People
from tests.hubtools import HubProcess


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _api(hub: HubProcess, token: str | None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or False)


def test_create_upload_list_download(hub: HubProcess, people: People, tmp_path: Path, unique: str) -> None:
    alice = _api(hub, people.alice)
    url = alice.create_bucket(unique, private=True)
    assert (url.bucket_id, url.url) == (f"alice/{unique}", f"{hub.url}/buckets/alice/{unique}")
    assert alice.create_bucket(f"alice/{unique}", exist_ok=True).bucket_id == f"alice/{unique}"
    bucket = f"alice/{unique}"
    weights = os.urandom(3_000_000)
    (tmp_path / "w.bin").write_bytes(weights)
    alice.batch_bucket_files(bucket, add=[(tmp_path / "w.bin", "ckpt/w.bin"), (b"step-1", "LATEST"), (b"", "e/.keep")])

    info = alice.bucket_info(bucket)
    assert (info.id, info.private, info.size, info.total_files) == (bucket, True, 3_000_006, 3)
    top = list(alice.list_bucket_tree(bucket))
    assert [(type(e), e.path) for e in top] == [(BucketFile, "LATEST"), (BucketFolder, "ckpt"), (BucketFolder, "e")]
    everything = {e.path: e for e in alice.list_bucket_tree(bucket, recursive=True)}
    assert set(everything) == {"LATEST", "ckpt/w.bin", "e/.keep"}
    assert isinstance(everything["ckpt/w.bin"], BucketFile) and everything["ckpt/w.bin"].size == 3_000_000
    assert [f.path for f in alice.get_bucket_paths_info(bucket, ["LATEST", "missing", "ckpt/w.bin"])] == [
        "LATEST",
        "ckpt/w.bin",
    ]
    meta = alice.get_bucket_file_metadata(bucket, "ckpt/w.bin")
    assert (meta.size, meta.xet_file_data.file_hash) == (3_000_000, everything["ckpt/w.bin"].xet_hash)

    out = tmp_path / "out"
    alice.download_bucket_files(
        bucket, [("ckpt/w.bin", out / "w.bin"), (everything["LATEST"], out / "LATEST"), ("e/.keep", out / "keep")]
    )
    assert (out / "w.bin").read_bytes() == weights
    assert (out / "LATEST").read_bytes() == b"step-1"
    assert (out / "keep").read_bytes() == b""
    assert [b.id for b in alice.list_buckets()] == [bucket] or bucket in [b.id for b in alice.list_buckets()]
