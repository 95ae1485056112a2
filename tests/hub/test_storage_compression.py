"""Compression at rest: a committed checkpoint's xorbs are packed in the background (ZipNN for floats, zstd, raw);
every read path still returns the exact bytes (``/resolve``, ranges, Xet transfers served uncompressed), ``fsck
--deep`` rebuilds and hashes packed objects and finds damage in them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from openckpt.errors import XetFormatError
from openckpt.hub.db.models import Xorb
from openckpt.hub.services import compression as storage_compression
from openckpt.hub.services.storage.accounting import account
from openckpt.hub.services.storage.fsck import check
from openckpt.hub.services.storage.gc import collect
from openckpt.store.url import open_store
from openckpt.xet import floatcodec, packed
from openckpt.xet.hashes import chunk_hash, hash_to_hex
from openckpt.xet.xorb import decode_chunks
from tests import zygote
from tests.hub.storagetools import XetUpload, age_everything, api, commit_xet, database, store_of
from tests.hubtools import HubProcess, S3Server, start_hub


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with compression at rest on (the hub's default; tests/conftest.py turns it off for the tests that read
    xorbs as uploaded)."""
    url = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(tmp_path_factory.mktemp("hub") / "data", url, env={"OPENCKPT_COMPRESS_AT_REST": "1"})
    yield server
    server.stop()


def _weights(n: int, dtype: str, seed: int = 0) -> bytes:
    values = np.random.default_rng(seed).normal(0, 0.02, n).astype(np.float32)
    if dtype == "bf16":
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return values.tobytes()


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("phase", [0, 1, 3])
def test_float_frames_round_trip_at_any_phase_and_shrink(dtype: str, phase: int) -> None:
    data = b"abc"[:phase] + _weights(300_000, dtype) + b"xy"
    frame = floatcodec.encode_frame(data)
    assert floatcodec.frame_codec(frame).startswith(dtype)
    assert floatcodec.decode_frame(frame) == data
    assert len(frame) < len(data) * (0.75 if dtype == "bf16" else 0.9)


def test_other_bytes_take_zstd_or_stay_raw_and_damage_is_an_error() -> None:
    text = b"the same words again and again " * 4000
    assert floatcodec.frame_codec(floatcodec.encode_frame(text)) == "zstd"
    noise = np.random.default_rng(1).bytes(200_000)
    frame = floatcodec.encode_frame(noise)
    assert floatcodec.frame_codec(frame) == "raw" and floatcodec.decode_frame(frame) == noise
    coded = bytearray(floatcodec.encode_frame(_weights(100_000, "bf16")))
    with pytest.raises(XetFormatError):
        floatcodec.decode_frame(bytes(coded[:-5]))


def test_packed_xorbs_read_any_chunk_range() -> None:
    chunks = [_weights(20_000 + 3 * i, "bf16", seed=i) for i in range(120)]
    body = packed.pack(chunks)
    index = packed.parse_index(body)
    assert len(index.firsts) > 1, "several frames"
    for start, end in ((0, 120), (5, 6), (90, 110), (119, 120)):
        got = packed.read_chunks(index, lambda at, n: body[at : at + n], start, end)
        assert [bytes(g) for g in got] == chunks[start:end]


def _reconstruction(hub: HubProcess, repo: str, file_hex: str) -> dict[str, Any]:
    auth = {"authorization": f"Bearer {hub.token}"}
    token = httpx.get(f"{hub.url}/api/models/{repo}/xet-read-token/main", headers=auth).json()
    auth = {"authorization": f"Bearer {token['accessToken']}"}
    answer: dict[str, Any] = httpx.get(f"{token['casUrl']}/v1/reconstructions/{file_hex}", headers=auth).json()
    return answer


def _first_fetch(plan: dict[str, Any]) -> httpx.Response:
    (entry,) = plan["fetch_info"][plan["terms"][0]["hash"]]
    span = entry["url_range"]
    return httpx.get(entry["url"], headers={"range": f"bytes={span['start']}-{span['end']}"}, timeout=60)


def _packed(hub: HubProcess, xorb: str, timeout: float = 120) -> Xorb:
    deadline = time.monotonic() + timeout
    while True:
        with database(hub) as db, db.read() as session:
            row = session.scalars(select(Xorb).where(Xorb.hash == xorb)).one()
            session.expunge(row)
        if row.encoding != storage_compression.AS_UPLOADED or time.monotonic() > deadline:
            return row
        time.sleep(0.2)


def test_committed_weights_are_packed_and_read_back_exactly(hub: HubProcess, unique: str) -> None:
    up = XetUpload(_weights(1_500_000, "bf16"))  # 3 MB of bf16 "weights", one xorb
    repo = api(hub).create_repo(f"admin/{unique}").repo_id
    commit_xet(hub, repo, up, "model.safetensors")
    row = _packed(hub, up.xorb_hex)
    assert row.encoding == storage_compression.PACKED
    assert row.stored_size is not None and row.stored_size < len(up.data) * 0.72
    store = store_of(hub)
    assert store.size(row.blob_sha256) == row.stored_size

    url = f"{hub.url}/{repo}/resolve/main/model.safetensors"
    assert httpx.get(url, timeout=60).content == up.data
    ranged = httpx.get(url, headers={"range": "bytes=1000001-2500000"}, timeout=60)
    assert ranged.status_code == 206 and ranged.content == up.data[1000001:2500001]

    # what an hf_xet client fetches: the reconstruction's transfer URLs, chunks served uncompressed
    plan = _reconstruction(hub, repo, up.file_hex)
    rebuilt = b""
    for term in plan["terms"]:
        (entry,) = plan["fetch_info"][term["hash"]]
        got = httpx.get(
            entry["url"], headers={"range": f"bytes={entry['url_range']['start']}-{entry['url_range']['end']}"}
        )
        chunks = decode_chunks(got.content)
        assert [hash_to_hex(chunk_hash(c)) for c in chunks] == [hash_to_hex(h) for h, _ in up.leaves]
        rebuilt += b"".join(chunks)
    assert rebuilt == up.data

    with database(hub) as db:
        assert check(db, store, deep=True).ok
        usage = next(r for r in account(db, store).repos.values() if r.repo_id == repo)
        assert usage.history_bytes >= len(up.data) and usage.deduplicated_bytes >= len(up.data)
        assert usage.physical_bytes < usage.deduplicated_bytes * 0.75, "compressed bytes are what is stored"
        again = storage_compression.compress(db, store)
        assert up.xorb_hex not in again.packed and up.xorb_hex not in again.failed
        path = store.local_path(row.blob_sha256)
        assert path is not None
        damaged = bytearray(path.read_bytes())
        damaged[-100] ^= 0xFF
        path.chmod(0o644)
        original = path.read_bytes()
        path.write_bytes(bytes(damaged))
        try:
            problems = {p.kind for p in check(db, store, deep=True).problems if up.xorb_hex in p.subject}
            assert problems == {"hash"}
        finally:
            path.write_bytes(original)
        assert check(db, store, deep=True).ok


def _compress_cli(hub: HubProcess) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "openckpt.cli.app", "admin", "compress", "--data-dir", str(hub.data_dir)]
    return zygote.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_during_compression_loses_nothing(tmp_path: Path, unique: str) -> None:
    hub = start_hub(tmp_path / "data", env={"OPENCKPT_COMPRESS_AT_REST": "0"})  # packed by the CLI only
    try:
        repo = api(hub).create_repo(f"admin/{unique}").repo_id
        text = b"".join(b"line %d of a config that LZ4 compresses\n" % i for i in range(50_000))
        ups = [XetUpload(text)] + [XetUpload(_weights(1_000_000, "bf16", seed=i)) for i in range(3)]
        for i, up in enumerate(ups):
            commit_xet(hub, repo, up, f"model-{i}.safetensors")
        store = store_of(hub)
        before = {p for p in (hub.data_dir / "store").rglob("*") if p.is_file()}
        stale = _reconstruction(hub, repo, ups[0].file_hex)  # planned on the xorb as stored (unpacked)
        job = _compress_cli(hub)
        while job.poll() is None and {p for p in (hub.data_dir / "store").rglob("*") if p.is_file()} == before:
            time.sleep(0.01)
        job.send_signal(signal.SIGKILL)  # as soon as its first packed object exists (or it ended)
        job.wait()

        def all_exact() -> None:
            for i, up in enumerate(ups):
                got = httpx.get(f"{hub.url}/{repo}/resolve/main/model-{i}.safetensors", timeout=60)
                assert got.content == up.data, i

        with database(hub) as db:
            assert check(db, store, deep=True).ok
            all_exact()
            report = storage_compression.compress(db, store)  # what the killed job left to do
            assert not report.failed
            with db.read() as session:
                encodings = set(session.scalars(select(Xorb.encoding)))
            assert encodings == {storage_compression.PACKED}
            old = _first_fetch(stale)  # a URL planned before packing: refused as expired, or the same bytes
            assert old.status_code == 403 or b"".join(decode_chunks(old.content)) == ups[0].data
            fresh = _first_fetch(_reconstruction(hub, repo, ups[0].file_hex))
            assert b"".join(decode_chunks(fresh.content)) == ups[0].data
            age_everything(hub, timedelta(hours=2))
            collected = collect(db, store, grace=timedelta(hours=1), url_ttl=timedelta(0))
            assert collected.orphans >= 1, "the objects as uploaded (and any the kill left unnamed) are freed"
            assert check(db, store, deep=True).ok
        all_exact()
        cmd = [sys.executable, "-m", "openckpt.cli.app", "admin", "storage", "--data-dir", str(hub.data_dir)]
        shown = zygote.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"})
        assert repo in shown.stdout and "compression" in shown.stdout
    finally:
        hub.stop()


def test_packed_xorbs_on_s3(s3: S3Server, tmp_path: Path, unique: str) -> None:
    storage = s3.storage_url(f"pack{uuid.uuid4().hex[:8]}")
    hub = start_hub(tmp_path / "data", storage_url=storage, env={"OPENCKPT_COMPRESS_AT_REST": "1"})
    try:
        up = XetUpload(_weights(1_500_000, "fp32"))
        repo = api(hub).create_repo(f"admin/{unique}").repo_id
        commit_xet(hub, repo, up, "model.safetensors")
        row = _packed(hub, up.xorb_hex)
        assert row.encoding == storage_compression.PACKED and (row.stored_size or 0) < len(up.data) * 0.9
        url = f"{hub.url}/{repo}/resolve/main/model.safetensors"
        assert httpx.get(url, timeout=60).content == up.data
        ranged = httpx.get(url, headers={"range": "bytes=4000001-5000000"}, timeout=60)
        assert ranged.content == up.data[4000001:5000001]
        with database(hub) as db:
            assert check(db, open_store(storage, hub.data_dir), deep=True).ok
    finally:
        hub.stop()
