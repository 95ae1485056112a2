"""What is particular to the S3 store (against a real ``moto`` server): storage URLs, typed errors for a missing bucket,
an unreachable endpoint or missing credentials, and multipart uploads that stay invisible until verified."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from openckpt.errors import StorageError, UploadMismatchError
from openckpt.store.local import LocalBlobStore
from openckpt.store.s3 import S3BlobStore
from openckpt.store.url import open_store
from tests.hubtools import S3Server, free_port

PART = 5 << 20


def test_local_urls(tmp_path: Path) -> None:
    default = open_store("", tmp_path)
    assert isinstance(default, LocalBlobStore) and default.root == tmp_path / "store"
    for url in (f"file://{tmp_path}/elsewhere", f"{tmp_path}/elsewhere", f"file://localhost{tmp_path}/elsewhere"):
        store = open_store(url, tmp_path)
        assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("relative/store", "absolute path"),
        ("file://host/srv/store", "absolute path"),
        ("gs://bucket/x", "use file:///path or s3://"),
        ("s3:///prefix", "names no bucket"),
        ("s3://bucket/x?endpoint=http://127.0.0.1:9000", "unknown option endpoint"),
        ("s3://bucket/x?part_size=big", "part_size"),
        ("s3://bucket/x?addressing_style=sideways", "addressing_style"),
    ],
)
def test_bad_urls(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        open_store(url, tmp_path)


def test_s3_url_options(s3: S3Server, tmp_path: Path) -> None:
    store = open_store(s3.storage_url("/a/b/") + f"&part_size={PART}&addressing_style=path", tmp_path)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.part_size) == (s3.bucket, "a/b/", PART)
    assert store.key_of("0" * 64) == f"a/b/blobs/{'0' * 64}"
    with pytest.raises(StorageError, match="at least 5 MiB"):
        open_store(s3.storage_url("x") + "&part_size=1000", tmp_path)


def test_missing_bucket(s3: S3Server, tmp_path: Path) -> None:
    url = f"s3://no-such-bucket/x?endpoint_url={s3.endpoint}&region=us-east-1"
    with pytest.raises(StorageError, match="'no-such-bucket' does not exist"):
        open_store(url, tmp_path)


def test_unreachable_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    url = f"s3://bucket/x?endpoint_url=http://127.0.0.1:{free_port()}&region=us-east-1"
    with pytest.raises(StorageError, match="unreachable"):
        open_store(url, tmp_path)


def test_no_credentials(s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="no AWS credentials"):
        open_store(s3.storage_url("x"), tmp_path)


def test_multipart_upload_is_invisible_until_verified(s3: S3Server, tmp_path: Path) -> None:
    """Named upload: parts go straight to the final key, but the object exists only after a verified commit."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = open_store(s3.storage_url(prefix) + f"&part_size={PART}", tmp_path)
    data = os.urandom(3 * PART + 1)
    sha256 = hashlib.sha256(data).hexdigest()
    writer = store.writer(len(data), sha256=sha256)
    writer.write(data[: 2 * PART + 1])
    assert s3.pending_uploads(prefix) == [f"{prefix}/blobs/{sha256}"]
    assert not store.exists(sha256) and s3.keys(prefix) == []
    writer.write(data[2 * PART + 1 :])
    assert writer.commit(sha256, len(data)) == sha256
    assert s3.keys(prefix) == [f"{prefix}/blobs/{sha256}"] and s3.pending_uploads(prefix) == []
    assert b"".join(store.read(sha256, PART - 3, 2 * PART + 5)) == data[PART - 3 : 2 * PART + 5]


def test_lying_upload_to_final_key_is_aborted(s3: S3Server, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = open_store(s3.storage_url(prefix) + f"&part_size={PART}", tmp_path)
    data = os.urandom(2 * PART + 1)
    claimed = hashlib.sha256(b"something else").hexdigest()
    writer = store.writer(len(data), sha256=claimed)
    writer.write(data)
    with pytest.raises(UploadMismatchError, match="expected"):
        writer.commit(claimed, len(data))
    assert s3.keys(prefix) == [] and s3.pending_uploads(prefix) == []


def test_same_blob_twice_in_parallel(s3: S3Server, tmp_path: Path) -> None:
    """Two uploads of the same bytes (two servers racing) both succeed; one object remains, intact."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = open_store(s3.storage_url(prefix) + f"&part_size={PART}", tmp_path)
    data = os.urandom(2 * PART + 3)
    sha256 = hashlib.sha256(data).hexdigest()
    writers = [store.writer(len(data), sha256=sha256), store.writer(None)]
    for start in range(0, len(data), PART // 2):
        for writer in writers:
            writer.write(data[start : start + PART // 2])
    assert [w.commit(sha256, len(data)) for w in writers] == [sha256, sha256]
    assert s3.keys(prefix) == [f"{prefix}/blobs/{sha256}"] and s3.pending_uploads(prefix) == []
    assert hashlib.sha256(b"".join(store.read(sha256))).hexdigest() == sha256
