"""The BlobStore contract, on the local and the S3 backend (a real ``moto`` server): exact bytes for every size and
batching, with the name announced up front or not; ranged reads; nothing visible and no temp data left when the
bytes are not the announced ones or the write is abandoned; keys, stat, delete and the sweep of abandoned uploads.
The local writer's ``O_DIRECT`` sizes are tested on the local backend only."""

from __future__ import annotations

import hashlib
import mmap
import os
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from openckpt.errors import IntegrityError, InvalidDigestError, UploadAbortedError, UploadMismatchError
from openckpt.store.blobs import BlobStore
from openckpt.store.local import DIRECT_FROM, LocalBlobStore
from openckpt.store.url import open_store
from tests.hubtools import S3Server

PART = 5 << 20
"""The S3 store's part size in these tests (S3's minimum), so that a few MiB already make a multipart upload."""
SIZES = [0, 1, 4097, PART - 1, PART, PART + 1, 2 * PART + 12345]
LOCAL_SIZES = [4095, 4096, 3 << 20, DIRECT_FROM, DIRECT_FROM + 1, 3 * DIRECT_FROM + 12345]


@dataclass
class Backend:
    store: BlobStore
    leftovers: Callable[[], list[str]]
    """Temp files, temp objects and unfinished multipart uploads: what an upload must never leave behind."""


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        local = LocalBlobStore(tmp_path)
        yield Backend(local, lambda: [p.name for p in local.tmp_dir.iterdir()])
        return
    s3: S3Server = request.getfixturevalue("s3")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = open_store(s3.storage_url(prefix) + f"&part_size={PART}", tmp_path)
    yield Backend(store, lambda: s3.keys(f"{prefix}/tmp/") + s3.pending_uploads(f"{prefix}/"))


def batches(data: bytes, seed: int) -> Iterator[list[bytes]]:
    """``data`` as batches of uneven chunks, as uploads arrive."""
    rng, pos = random.Random(seed), 0
    while pos < len(data):
        batch = []
        for _ in range(rng.randint(1, 4)):
            n = rng.choice([1, 100, 65536, 262144, 3 << 20])
            batch.append(data[pos : pos + n])
            pos += n
        yield [c for c in batch if c]


def put(store: BlobStore, data: bytes, *, named: bool = True, hinted: bool = True) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    writer = store.writer(len(data) if hinted else None, sha256=sha256 if named else None)
    for batch in batches(data, len(data)):
        writer.write_all(batch)
    assert writer.commit(sha256, len(data)) == sha256
    return sha256


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("named", "hinted"), [(True, True), (False, True), (False, False)])
def test_round_trip(backend: Backend, size: int, named: bool, hinted: bool) -> None:
    store, data = backend.store, os.urandom(size)
    sha256 = put(store, data, named=named, hinted=hinted)
    assert b"".join(store.read(sha256)) == data
    assert b"".join(store.read(sha256, 1, max(size - 1, 1))) == data[1 : max(size - 1, 1)]
    assert b"".join(store.read(sha256, size)) == b""
    stat = store.stat(sha256)
    assert stat is not None and stat.size == size == store.size(sha256)
    assert store.exists(sha256) and sha256 in set(store.keys())
    assert not backend.leftovers()


@pytest.mark.parametrize("size", LOCAL_SIZES)
def test_local_round_trip(tmp_path: Path, size: int) -> None:
    """Buffered and ``O_DIRECT`` writes around the page size and the direct-write threshold."""
    store = LocalBlobStore(tmp_path)
    data = os.urandom(size)
    sha256 = put(store, data)
    assert store.path_of(sha256).read_bytes() == data
    assert b"".join(store.read(sha256, 1, max(size - 1, 1))) == data[1 : max(size - 1, 1)]
    assert not list(store.tmp_dir.iterdir())


@pytest.mark.parametrize("size", [3 << 20, 3 * DIRECT_FROM + 12345])
def test_local_writes_can_be_followed(tmp_path: Path, size: int) -> None:
    """A reader of the writer's ``local_file`` (around the page cache, as the writer may write) finds its first
    ``in_file`` bytes there while the blob is written, and keeps reading it once the commit has moved it."""
    store = LocalBlobStore(tmp_path)
    data = os.urandom(size)
    writer = store.writer(size)
    local = writer.local_file()
    assert local is not None
    fd = os.open(local, os.O_RDONLY | os.O_DIRECT)
    buffer = mmap.mmap(-1, len(data) + 4096)
    try:

        def first(n: int) -> bytes:
            got = os.preadv(fd, [memoryview(buffer)[: -(-n // 4096) * 4096]], 0)
            return buffer[: min(n, got)]

        for batch in batches(data, seed=size):
            writer.write_all(batch)
            there = writer.in_file  # the writer's thread may move it on
            assert first(there) == data[:there]
        assert writer.commit() == hashlib.sha256(data).hexdigest() and writer.in_file == size
        assert first(size) == data
    finally:
        os.close(fd)
        buffer.close()


@pytest.mark.parametrize("size", [5000, 2 * PART + 5000])
def test_wrong_bytes_leave_nothing(backend: Backend, size: int) -> None:
    store, data = backend.store, os.urandom(size)
    good = hashlib.sha256(data).hexdigest()
    for announced, content in ((good, data[:-1] + b"!"), ("0" * 64, data)):
        for named in (True, False):
            writer = store.writer(size, sha256=announced if named else None)
            writer.write(content)
            with pytest.raises(UploadMismatchError):
                writer.commit(announced, size)
            assert not store.exists(hashlib.sha256(content).hexdigest()) and not store.exists(announced)
    writer = store.writer(size, sha256=good)
    writer.write(data)
    with pytest.raises(UploadMismatchError, match="expected"):
        writer.commit(good, size + 1)
    writer = store.writer(size, sha256="1" * 64)  # a name announced to the store but never confirmed at commit
    writer.write(data)
    with pytest.raises(UploadMismatchError, match="expected"):
        writer.commit()
    assert not backend.leftovers()
    assert list(store.keys()) == []


def test_abort(backend: Backend) -> None:
    store = backend.store
    writer = store.writer(2 * PART + 7)
    writer.write(os.urandom(2 * PART + 7))
    writer.abort()
    assert not backend.leftovers()
    with pytest.raises(UploadAbortedError, match="aborted"):
        writer.write(b"more")
    assert list(store.keys()) == []


def test_local_write_behind_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails behind the hashing surfaces by the commit at the latest, and nothing stays behind."""
    import openckpt.store.local as local

    store, calls = LocalBlobStore(tmp_path), [0]

    def failing(fd: int, chunks: list[bytes]) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(local, "_write_fully", failing)
    data = os.urandom(6 << 20)
    writer = store.writer(None, sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(OSError, match="No space"):
        for i in range(0, len(data), 1 << 20):
            writer.write(data[i : i + (1 << 20)])
        writer.commit()
    writer.abort()
    assert calls[0] >= 3 and not list(store.tmp_dir.iterdir()) and list(store.keys()) == []


def test_missing_blob(backend: Backend) -> None:
    missing = "ab" * 32
    assert not backend.store.exists(missing) and backend.store.stat(missing) is None
    assert backend.store.size(missing) is None
    with pytest.raises(IntegrityError, match="missing"):
        b"".join(backend.store.read(missing))
    with pytest.raises(InvalidDigestError, match="not a sha256"):
        backend.store.exists("../../etc/passwd")


def test_keys_and_delete(backend: Backend) -> None:
    store = backend.store
    names = {put(store, os.urandom(n)) for n in (10, 20, 30)}
    assert set(store.keys()) == names
    gone = names.pop()
    store.delete(gone)
    store.delete(gone)  # idempotent
    assert set(store.keys()) == names and not store.exists(gone)


def test_sweep_removes_abandoned_uploads(backend: Backend) -> None:
    """What a killed server leaves (a writer never committed nor aborted) goes in a sweep; recent work stays."""
    store = backend.store
    for named in (True, False):
        abandoned = store.writer(None, sha256=("cd" * 32) if named else None)
        abandoned.write(os.urandom(2 * PART + 1))  # past one part: an S3 multipart upload is under way
    assert backend.leftovers()
    if isinstance(store, LocalBlobStore):  # moto dates every multipart upload 2010-11-10: age is testable locally
        assert store.sweep(older_than=3600) == 0
    assert store.sweep(older_than=0) >= 2
    assert not backend.leftovers()


@pytest.mark.parametrize("size", [5000, DIRECT_FROM + 12345])
def test_a_blob_hashed_by_its_caller(tmp_path: Path, size: int) -> None:
    """``hashed``: the caller's sha256 names the blob; from page-aligned memory, ``O_DIRECT`` writes need no copy."""
    from openckpt.xet.xorb import new_buffer

    store = LocalBlobStore(tmp_path)
    data = os.urandom(size)
    aligned = new_buffer(size)
    aligned[:] = data
    sha256 = hashlib.sha256(data).hexdigest()
    writer = store.writer(size, sha256=sha256, hashed=True)
    writer.write(aligned[: size // 2])  # type: ignore[arg-type]
    writer.written()
    writer.write(aligned[size // 2 :])  # type: ignore[arg-type]
    assert writer.commit(expected_size=size) == sha256
    assert store.path_of(sha256).read_bytes() == data
    later = store.writer(size, hashed=True)  # named when it is committed
    later.write(data)
    assert later.commit(sha256) == sha256
    unnamed = store.writer(size, hashed=True)
    unnamed.write(data)
    with pytest.raises(ValueError, match="sha256"):
        unnamed.commit()
    assert not list(store.tmp_dir.iterdir())


def test_direct_file(tmp_path: Path) -> None:
    from openckpt.store.local import DirectFile

    data = os.urandom(3 * 4096 + 77)
    copy = DirectFile(tmp_path / "copy")
    for batch in batches(data, seed=1):
        copy.write(batch)
    copy.close()
    assert (tmp_path / "copy").read_bytes() == data
