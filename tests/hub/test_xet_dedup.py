"""Global dedup from a fresh machine: the stock client with an empty hf_xet cache sends only what is new when the
hub holds the rest, even when a new header hides the first chunk; answers list each upload's xorbs; a xorb an answer
listed survives garbage collection until the client's shard names it; concurrent fresh uploads under a running
collector all download byte for byte."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from openckpt.hub.db.models import XetUpload, Xorb
from openckpt.hub.services.storage.gc import collect
from openckpt.xet.hashes import hash_to_hex, keyed_chunk_hash
from openckpt.xet.shard import parse_shard
from tests.hub.storagetools import XetUpload as RawUpload
from tests.hub.storagetools import age_everything, commit_lfs, database, put_xet, store_of
from tests.hub.test_xet_compat import run_client, write_folder, xet_env
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes

GRACE = timedelta(hours=1)


def _stored(hub: HubProcess) -> int:
    with database(hub) as db, db.read() as session:
        return int(session.scalar(select(func.coalesce(func.sum(Xorb.serialized_size), 0))) or 0)


def _checkpoint(name: str, body: bytes) -> bytes:
    """A safetensors file of one U8 tensor ``name`` holding ``body``: a small header before the tensor's bytes."""
    header = json.dumps({name: {"dtype": "U8", "shape": [len(body)], "data_offsets": [0, len(body)]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + body


def _write_token(hub: HubProcess, repo: str) -> tuple[str, dict[str, str]]:
    r = httpx.get(f"{hub.url}/api/models/{repo}/xet-write-token/main", headers={"authorization": f"Bearer {hub.token}"})
    assert r.status_code == 200, r.text
    return r.json()["casUrl"], {"authorization": f"Bearer {r.json()['accessToken']}"}


def test_fresh_cache_new_header_sends_only_the_new_chunk(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    body = opaque_bytes(24_000_000)
    v1 = _checkpoint("layers.0.weight", body)
    v2 = _checkpoint("blocks.0.weight", body)  # renamed: the first chunk differs
    write_folder(tmp_path / "v1", {"model.safetensors": v1})
    write_folder(tmp_path / "v2", {"model.safetensors": v2})
    run_client(
        "upload",
        xet_env(hub.url, tmp_path / "a", hub.token),
        endpoint=hub.url,
        token=hub.token,
        repo=f"admin/{unique}",
        folder=str(tmp_path / "v1"),
        message="v1",
    )
    with database(hub) as db, db.read() as session:
        assert session.scalar(select(func.count()).select_from(XetUpload)), "each registered shard is an upload"

    before = _stored(hub)  # another machine, empty cache, another repo of the same account
    run_client(
        "upload",
        xet_env(hub.url, tmp_path / "b", hub.token),
        endpoint=hub.url,
        token=hub.token,
        repo=f"admin/{unique}-v2",
        folder=str(tmp_path / "v2"),
        message="v2",
    )
    assert _stored(hub) - before < len(v2) / 50, "only the header's chunk is new"
    got = run_client(
        "download",
        xet_env(hub.url, tmp_path / "c", hub.token),
        endpoint=hub.url,
        token=hub.token,
        repo=f"admin/{unique}-v2",
        paths=["model.safetensors"],
        cache=str(tmp_path / "dl"),
    )
    assert got["one"] == {"model.safetensors": hashlib.sha256(v2).hexdigest()}


def test_first_chunk_answers_are_for_writers_and_bounded(hub: HubProcess, unique: str) -> None:
    repo = f"admin/{unique}"
    httpx.post(
        f"{hub.url}/api/repos/create",
        json={"name": unique, "type": "model"},
        headers={"authorization": f"Bearer {hub.token}"},
    ).raise_for_status()
    up = RawUpload(opaque_bytes(300_000))
    put_xet(hub, repo, up)
    unknown = "00" * 31 + "01"  # not eligible by its hash: only a file's first chunk is asked about
    cas, write = _write_token(hub, repo)
    r = httpx.get(f"{cas}/v1/chunks/default/{unknown}", headers=write)
    assert r.status_code == 200
    shard = parse_shard(r.content)
    assert [hash_to_hex(x.hash) for x in shard.xorbs] == [up.xorb_hex]
    assert shard.xorbs[0].chunks[0][0] == keyed_chunk_hash(up.leaves[0][0], shard.hmac_key)
    answered = 1 + sum(
        httpx.get(f"{cas}/v1/chunks/default/{unknown}", headers=write).status_code == 200 for _ in range(10)
    )
    assert answered == 8, "one answer per file hf_xet ingests at once, then none for this upload session"
    read = httpx.get(
        f"{hub.url}/api/models/{repo}/xet-read-token/main", headers={"authorization": f"Bearer {hub.token}"}
    )
    auth = {"authorization": f"Bearer {read.json()['accessToken']}"}
    assert httpx.get(f"{cas}/v1/chunks/default/{unknown}", headers=auth).status_code == 404


def test_a_listed_xorb_survives_gc_until_the_shard_names_it(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    repo = f"admin/{unique}"
    httpx.post(
        f"{hub.url}/api/repos/create",
        json={"name": unique, "type": "model"},
        headers={"authorization": f"Bearer {hub.token}"},
    ).raise_for_status()
    listed, other = RawUpload(opaque_bytes(300_000)), RawUpload(opaque_bytes(300_000))
    put_xet(hub, repo, listed)  # registered, never committed
    put_xet(hub, repo, other)
    age_everything(hub, timedelta(hours=2))  # past the grace period: both are garbage now
    cas, write = _write_token(hub, repo)
    r = httpx.get(f"{cas}/v1/chunks/default/{hash_to_hex(listed.leaves[0][0])}", headers=write)
    assert r.status_code == 200 and listed.xorb_hex in [hash_to_hex(x.hash) for x in parse_shard(r.content).xorbs]

    with database(hub) as db:
        collect(db, store_of(hub), grace=GRACE)
        with db.read() as session:
            assert session.get(Xorb, listed.xorb_hex) is not None, "listed in an answer: kept"
            assert session.get(Xorb, other.xorb_hex) is None, "nobody was told of it: swept"
    assert httpx.post(f"{cas}/v1/shards", content=listed.shard(), headers=write).is_success  # the client's shard
    commit_lfs(hub, repo, "w.bin", listed.sha256, len(listed.data))
    got = httpx.get(f"{hub.url}/{repo}/resolve/main/w.bin")
    assert got.status_code == 200 and got.content == listed.data


def test_concurrent_fresh_uploads_under_gc_download_exactly(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    body = opaque_bytes(12_000_000)
    base = _checkpoint("base", body)
    write_folder(tmp_path / "base", {"model.safetensors": base})
    run_client(
        "upload",
        xet_env(hub.url, tmp_path / "h0", hub.token),
        endpoint=hub.url,
        token=hub.token,
        repo=f"admin/{unique}",
        folder=str(tmp_path / "base"),
        message="base",
    )
    versions = {
        i: _checkpoint(f"v{i}", body[:6_000_000] + opaque_bytes(2_000_000) + body[8_000_000:]) for i in range(3)
    }
    for i, data in versions.items():
        write_folder(tmp_path / f"v{i}", {"model.safetensors": data})
    stop, errors = threading.Event(), list[BaseException]()

    def collector() -> None:
        with database(hub) as db:
            while not stop.is_set():
                try:
                    collect(db, store_of(hub), grace=GRACE)
                except Exception as e:  # a busy collector retries; anything else fails the test
                    if "busy" not in str(e).lower():
                        errors.append(e)
                stop.wait(0.2)

    def upload(i: int) -> None:
        try:
            _upload(i)
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    def _upload(i: int) -> None:
        run_client(
            "upload",
            xet_env(hub.url, tmp_path / f"h{i + 1}", hub.token),
            endpoint=hub.url,
            token=hub.token,
            repo=f"admin/{unique}-{i}",
            folder=str(tmp_path / f"v{i}"),
            message=f"v{i}",
        )

    gc = threading.Thread(target=collector)
    gc.start()
    workers = [threading.Thread(target=upload, args=(i,)) for i in versions]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        stop.set()
        gc.join()
    assert not errors
    for i, data in versions.items():
        got = httpx.get(f"{hub.url}/admin/{unique}-{i}/resolve/main/model.safetensors", timeout=60)
        assert got.status_code == 200 and hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest(), i
    assert _stored(hub) > 0
