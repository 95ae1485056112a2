"""The local blob store's writer: exact bytes for every size and batching, buffered and ``O_DIRECT``; nothing
visible and no temp file left when the bytes are not the announced ones or the write is abandoned."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from openckpt.errors import BadRequestError
from openckpt.store.blobs import DIRECT_FROM, LocalBlobStore

SIZES = [0, 1, 4095, 4096, 4097, 3 << 20, DIRECT_FROM, DIRECT_FROM + 1, 3 * DIRECT_FROM + 12345]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(tmp_path: Path, size: int) -> None:
    store = LocalBlobStore(tmp_path)
    data = os.urandom(size)
    writer = store.writer(size)
    rng, pos = random.Random(size), 0
    while pos < size:  # batches of uneven chunks, as uploads arrive
        batch = []
        for _ in range(rng.randint(1, 4)):
            n = rng.choice([1, 100, 65536, 262144, 3 << 20])
            batch.append(data[pos : pos + n])
            pos += n
        writer.write_all([c for c in batch if c])
    sha256 = writer.commit(hashlib.sha256(data).hexdigest(), size)
    assert store.path_of(sha256).read_bytes() == data
    assert b"".join(store.read(sha256, 1, max(size - 1, 1))) == data[1 : max(size - 1, 1)]
    assert not list(store.tmp_dir.iterdir())


@pytest.mark.parametrize("size", [5000, DIRECT_FROM + 5000])
def test_wrong_bytes_leave_nothing(tmp_path: Path, size: int) -> None:
    store = LocalBlobStore(tmp_path)
    data = os.urandom(size)
    for announced, content in ((hashlib.sha256(data).hexdigest(), data[:-1] + b"!"), ("0" * 64, data)):
        writer = store.writer(size)
        writer.write(content)
        with pytest.raises(BadRequestError):
            writer.commit(announced, size)
        assert not store.exists(hashlib.sha256(content).hexdigest())
    writer = store.writer(size)
    writer.write(data)
    with pytest.raises(BadRequestError, match="expected"):
        writer.commit(hashlib.sha256(data).hexdigest(), size + 1)
    assert not list(store.tmp_dir.iterdir())
    assert not list((tmp_path / "blobs").iterdir())


def test_abort(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    writer = store.writer(2 * DIRECT_FROM)
    writer.write(os.urandom(DIRECT_FROM + 7))
    writer.abort()
    assert not list(store.tmp_dir.iterdir())
    with pytest.raises(BadRequestError, match="aborted"):
        writer.write(b"more")
