"""The hub's CAS on the wire, driven byte by byte: tokens, xorb and shard uploads (good, truncated, corrupted and
lying ones: 400 and nothing stored), reconstructions with Range, transfer URLs, global dedup and the opt-outs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import XetFile, XetSha256, Xorb
from openckpt.xet.chunking import chunk_boundaries
from openckpt.xet.hashes import (
    chunk_hash,
    eligible_for_global_dedup,
    file_hash,
    hash_to_hex,
    keyed_chunk_hash,
    verification_hash,
    xorb_hash,
)
from openckpt.xet.shard import FileTerm, Shard, XorbInfo, parse_shard, serialize_shard
from openckpt.xet.shard import XetFile as ShardFile
from openckpt.xet.xorb import build_xorb, decode_chunk, parse_xorb
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes


@pytest.fixture(scope="module")
def db(hub: HubProcess) -> Iterator[Database]:
    database = Database(hub.database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def repo(hub: HubProcess) -> str:
    r = httpx.post(f"{hub.url}/api/repos/create", json={"name": "cas", "type": "model"},
                   headers={"authorization": f"Bearer {hub.token}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return "admin/cas"


def _token(hub: HubProcess, repo: str, scope: str = "write", hub_token: str | None = None) -> dict[str, str]:
    r = httpx.get(f"{hub.url}/api/models/{repo}/xet-{scope}-token/main",
                  headers={"authorization": f"Bearer {hub_token or hub.token}"})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-xet-access-token"] == body["accessToken"]
    assert r.headers["x-xet-cas-url"] == body["casUrl"] == f"{hub.url}/cas"
    assert int(r.headers["x-xet-token-expiration"]) == body["exp"]
    return {"cas": body["casUrl"], "authorization": f"Bearer {body['accessToken']}"}


class Upload:
    """A file cut into chunks, its xorb and the shard that registers it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        cuts = chunk_boundaries(data)
        self.chunks = [data[a:b] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]
        self.leaves = [(chunk_hash(c), len(c)) for c in self.chunks]
        self.xorb = build_xorb(self.chunks)
        self.xorb_hex = hash_to_hex(xorb_hash(self.leaves))
        self.file_hex = hash_to_hex(file_hash(self.leaves))
        self.sha256 = hashlib.sha256(data).hexdigest()

    def shard(self, *, sha256: str | None = None, verification: bytes | None = None, size: int | None = None,
              file: bytes | None = None, chunk_end: int | None = None, list_xorb: bool = True) -> bytes:  # fmt: skip
        term = FileTerm(xorb_hash(self.leaves), 0, chunk_end or len(self.chunks), size or len(self.data),
                        verification or verification_hash([h for h, _ in self.leaves]))  # fmt: skip
        entry = ShardFile(file or file_hash(self.leaves), (term,), bytes.fromhex(sha256 or self.sha256))
        offsets = [sum(s for _, s in self.leaves[:i]) for i in range(len(self.leaves))]
        info = XorbInfo(
            xorb_hash(self.leaves), tuple((h, o, s) for (h, s), o in zip(self.leaves, offsets, strict=True))
        )
        return serialize_shard(Shard((entry,), (info,) if list_xorb else ()), footer=False)


def _stored_files(hub: HubProcess) -> set[Path]:
    return {p for p in (hub.data_dir).rglob("*") if p.is_file() and ".db" not in p.name and "lock" not in p.name}


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["x-error-code"] == "InvalidXetUpload"


def test_tokens_need_rights(hub: HubProcess, repo: str) -> None:
    assert httpx.get(f"{hub.url}/api/models/{repo}/xet-write-token/main").status_code == 401
    assert httpx.get(f"{hub.url}/api/models/{repo}/xet-read-token/nope", headers={
        "authorization": f"Bearer {hub.token}"}).status_code == 404  # fmt: skip
    assert httpx.get(f"{hub.url}/api/models/{repo}/xet-write-token/None?create_pr=1", headers={
        "authorization": f"Bearer {hub.token}"}).status_code == 200  # fmt: skip
    read = _token(hub, repo, "read")
    up = Upload(opaque_bytes(50_000))
    r = httpx.post(f"{read['cas']}/v1/xorbs/default/{up.xorb_hex}", content=up.xorb,
                   headers={"authorization": read["authorization"]})  # fmt: skip
    assert r.status_code == 403
    forged = read["authorization"].replace(".read.", ".write.")
    r = httpx.post(f"{read['cas']}/v1/xorbs/default/{up.xorb_hex}", content=up.xorb, headers={"authorization": forged})
    assert r.status_code == 401
    assert httpx.post(f"{read['cas']}/v1/xorbs/default/{up.xorb_hex}", content=up.xorb).status_code == 401


def test_bad_xorbs_are_refused_and_nothing_is_stored(hub: HubProcess, repo: str, db: Database) -> None:
    auth = _token(hub, repo)
    up = Upload(opaque_bytes(300_000))
    before = _stored_files(hub)
    url = f"{auth['cas']}/v1/xorbs/default/{up.xorb_hex}"
    headers = {"authorization": auth["authorization"]}
    corrupt = bytearray(up.xorb)
    corrupt[len(corrupt) // 2] ^= 0xFF
    other = Upload(opaque_bytes(20_000))
    for body in (up.xorb[:-10], up.xorb[:5], bytes(corrupt), other.xorb, b"", b"\x01" + up.xorb[1:]):
        _refused(httpx.post(url, content=body, headers=headers))  # truncated, corrupt, another xorb's bytes
    _refused(httpx.post(f"{auth['cas']}/v1/xorbs/default/NOT-A-HASH", content=up.xorb, headers=headers))
    with db.read() as session:
        assert session.get(Xorb, up.xorb_hex) is None and session.get(Xorb, other.xorb_hex) is None
    assert _stored_files(hub) == before

    first = httpx.post(url, content=up.xorb, headers=headers)
    assert first.status_code == 200 and first.json() == {"was_inserted": True}
    again = httpx.post(url, content=up.xorb, headers=headers)
    assert again.status_code == 200 and again.json() == {"was_inserted": False}
    with db.read() as session:
        row = session.get(Xorb, up.xorb_hex)
        assert row is not None and row.num_chunks == len(up.chunks) and row.unpacked_size == len(up.data)
        assert row.serialized_size == len(up.xorb)


def test_bad_shards_are_refused_and_nothing_is_registered(hub: HubProcess, repo: str, db: Database) -> None:
    auth = _token(hub, repo)
    headers = {"authorization": auth["authorization"]}
    up = Upload(opaque_bytes(400_000))
    shard_url = f"{auth['cas']}/v1/shards"
    _refused(httpx.post(shard_url, content=up.shard(), headers=headers))  # its xorb was never uploaded
    _refused(httpx.post(shard_url, content=up.shard(list_xorb=False), headers=headers))
    assert httpx.post(f"{auth['cas']}/v1/xorbs/default/{up.xorb_hex}", content=up.xorb, headers=headers).is_success
    good = up.shard()
    lies = {
        "truncated": good[:-7],
        "garbage": b"not a shard at all" * 10,
        "verification": up.shard(verification=bytes(32)),
        "size": up.shard(size=len(up.data) - 1),
        "file hash": up.shard(file=os.urandom(32)),
        "chunk range": up.shard(chunk_end=len(up.chunks) + 1),
    }
    for what, body in lies.items():
        response = httpx.post(shard_url, content=body, headers=headers)
        assert response.status_code == 400, what
        assert response.headers["x-error-code"] == "InvalidXetUpload", what
    with db.read() as session:
        assert session.get(XetFile, up.file_hex) is None
        assert session.scalar(select(func.count()).select_from(XetSha256).where(XetSha256.sha256 == up.sha256)) == 0
    assert httpx.post(f"{auth['cas']}/v2/shards", content=good, headers=headers).status_code == 404
    first = httpx.post(shard_url, content=good, headers=headers)
    assert first.status_code == 200 and first.json() == {"result": 1}
    assert httpx.post(shard_url, content=good, headers=headers).json() == {"result": 0}


def test_commit_of_a_lying_sha256_is_refused(hub: HubProcess, repo: str, db: Database) -> None:
    """A shard may claim any sha256 for its file; the hub checks it (by reconstruction) before a commit uses it."""
    auth = _token(hub, repo)
    headers = {"authorization": auth["authorization"]}
    up = Upload(opaque_bytes(120_000))
    claimed = hashlib.sha256(b"something else entirely").hexdigest()
    assert httpx.post(f"{auth['cas']}/v1/xorbs/default/{up.xorb_hex}", content=up.xorb, headers=headers).is_success
    assert httpx.post(f"{auth['cas']}/v1/shards", content=up.shard(sha256=claimed), headers=headers).is_success
    commit = (b'{"key":"header","value":{"summary":"lie"}}\n'
              b'{"key":"lfsFile","value":{"path":"lie.bin","algo":"sha256","oid":"%s","size":%d}}\n'
              % (claimed.encode(), len(up.data)))  # fmt: skip
    r = _post_commit(hub, repo, commit)
    assert r.status_code == 400 and "has not been uploaded" in r.text
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(XetSha256).where(XetSha256.sha256 == claimed)) == 0


def _post_commit(hub: HubProcess, repo: str, body: bytes) -> httpx.Response:
    headers = {"authorization": f"Bearer {hub.token}", "content-type": "application/x-ndjson"}
    return httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content=body, headers=headers)


def _commit_upload(hub: HubProcess, repo: str, up: Upload, path: str) -> None:
    auth = _token(hub, repo)
    headers = {"authorization": auth["authorization"]}
    assert httpx.post(f"{auth['cas']}/v1/xorbs/default/{up.xorb_hex}", content=up.xorb, headers=headers).is_success
    assert httpx.post(f"{auth['cas']}/v1/shards", content=up.shard(), headers=headers).is_success
    commit = (b'{"key":"header","value":{"summary":"add"}}\n'
              b'{"key":"lfsFile","value":{"path":"%s","algo":"sha256","oid":"%s","size":%d}}\n'
              % (path.encode(), up.sha256.encode(), len(up.data)))  # fmt: skip
    r = _post_commit(hub, repo, commit)
    assert r.status_code == 200, r.text


def test_reconstruction_ranges_and_transfer_urls(hub: HubProcess, repo: str) -> None:
    up = Upload(opaque_bytes(700_000))
    _commit_upload(hub, repo, up, "recon.bin")
    head = httpx.head(f"{hub.url}/{repo}/resolve/main/recon.bin")
    assert head.headers["x-xet-hash"] == up.file_hex
    assert 'rel="xet-auth"' in head.headers["link"] and "/xet-read-token/" in head.headers["link"]
    read = _token(hub, repo, "read")
    url = f"{read['cas']}/v1/reconstructions/{up.file_hex}"
    auth = {"authorization": read["authorization"]}
    size = len(up.data)
    for first, last in ((0, size - 1), (1000, 1999), (size - 5, size + 100), (200_000, 600_000)):
        r = httpx.get(url, headers={**auth, "range": f"bytes={first}-{last}"})
        assert r.status_code == 200, r.text
        assert _fetch(r.json())[: min(last, size - 1) - first + 1] == up.data[first : last + 1]
    assert httpx.get(url, headers={**auth, "range": f"bytes={size}-{size + 10}"}).status_code == 416
    assert httpx.get(url, headers=auth).status_code == 200
    assert httpx.get(url).status_code == 401

    plan = httpx.get(url, headers={**auth, "range": "bytes=300000-310000"}).json()  # chunks in the middle
    entry = next(iter(plan["fetch_info"].values()))[0]
    span = entry["url_range"]
    r = httpx.get(entry["url"], headers={"range": f"bytes={span['start']}-{span['end']}"})
    assert r.status_code == 206 and len(r.content) == span["end"] - span["start"] + 1
    assert httpx.get(entry["url"].replace("sig=", "sig=0"), headers={"range": "bytes=0-10"}).status_code == 403
    assert span["start"] > 0
    assert httpx.get(entry["url"], headers={"range": f"bytes=0-{span['end']}"}).status_code == 403

    other = httpx.post(f"{hub.url}/api/repos/create", json={"name": "cas-other", "type": "model"},
                       headers={"authorization": f"Bearer {hub.token}"})  # fmt: skip
    assert other.status_code == 200
    stranger = _token(hub, "admin/cas-other", "read")
    assert httpx.get(url, headers={"authorization": stranger["authorization"]}).status_code == 404

    plain = httpx.get(f"{hub.url}/{repo}/resolve/main/recon.bin", headers={"range": "bytes=12345-"})
    assert plain.status_code == 206 and plain.content == up.data[12345:]
    listing = httpx.get(f"{hub.url}/api/models/{repo}/tree/main").json()
    assert {i["path"]: i.get("xetHash") for i in listing}["recon.bin"] == up.file_hex


def _fetch(plan: dict[str, Any]) -> bytes:
    """The bytes a reconstruction answer describes, fetched and decoded as hf_xet would, trimmed at its start."""
    out = b""
    for term in plan["terms"]:
        chunks = term["range"]
        entry = next(e for e in plan["fetch_info"][term["hash"]]
                     if e["range"]["start"] <= chunks["start"] and chunks["end"] <= e["range"]["end"])  # fmt: skip
        span = entry["url_range"]
        raw = httpx.get(entry["url"], headers={"range": f"bytes={span['start']}-{span['end']}"}).content
        xorb = parse_xorb(raw)
        skip = chunks["start"] - entry["range"]["start"]
        out += b"".join(decode_chunk(raw, c) for c in xorb.chunks[skip : skip + chunks["end"] - chunks["start"]])
        assert len(out) >= term["unpacked_length"]
    return out[plan["offset_into_first_range"] :]


def test_global_dedup_answers_a_keyed_shard(hub: HubProcess, repo: str) -> None:
    up = Upload(opaque_bytes(500_000))
    _commit_upload(hub, repo, up, "dedup.bin")
    read = _token(hub, repo, "read")
    auth = {"authorization": read["authorization"]}
    first = hash_to_hex(up.leaves[0][0])
    r = httpx.get(f"{read['cas']}/v1/chunks/default/{first}", headers=auth)
    assert r.status_code == 200
    shard = parse_shard(r.content)
    assert shard.hmac_key != bytes(32) and len(shard.xorbs) == 1
    listed = [h for h, _, _ in shard.xorbs[0].chunks]
    assert listed == [keyed_chunk_hash(h, shard.hmac_key) for h, _ in up.leaves]
    assert httpx.get(f"{read['cas']}/v1/chunks/default-merkledb/{first}", headers=auth).status_code == 200
    unknown = hash_to_hex(chunk_hash(os.urandom(100)))
    assert httpx.get(f"{read['cas']}/v1/chunks/default/{unknown}", headers=auth).status_code == 404
    middle = up.leaves[1][0]  # not the first chunk of a file: answered only if eligible by its hash
    expected = 200 if eligible_for_global_dedup(middle) else 404
    assert httpx.get(f"{read['cas']}/v1/chunks/default/{hash_to_hex(middle)}", headers=auth).status_code == expected


def test_optional_routes_opt_out(hub: HubProcess, repo: str) -> None:
    auth = _token(hub, repo)
    headers = {"authorization": auth["authorization"]}
    h = "0" * 64
    assert (
        httpx.post(f"{auth['cas']}/v1/xorb-grants/default/{h}", json={"length": 1}, headers=headers).status_code == 404
    )
    assert httpx.get(f"{auth['cas']}/v2/reconstructions/{h}", headers=headers).status_code == 404
    assert httpx.post(f"{hub.url}/v1/telemetry", json={"event": "x"}).status_code == 200


def test_the_gate_scans_xet_uploads_before_they_are_visible(hub: HubProcess, repo: str) -> None:
    """Files uploaded through Xet are rebuilt from their xorbs for the scanner: malicious ones are refused,
    withheld ones get no Xet metadata and the CAS will not rebuild them for the repo's readers."""
    evil = Upload(b"cos\nsystem\n(S'echo owned'\ntR." + b"\n" * 70_000)
    auth = _token(hub, repo)
    headers = {"authorization": auth["authorization"]}
    assert httpx.post(f"{auth['cas']}/v1/xorbs/default/{evil.xorb_hex}", content=evil.xorb, headers=headers).is_success
    assert httpx.post(f"{auth['cas']}/v1/shards", content=evil.shard(), headers=headers).is_success
    body = (b'{"key":"header","value":{"summary":"evil"}}\n'
            b'{"key":"lfsFile","value":{"path":"evil.pkl","algo":"sha256","oid":"%s","size":%d}}\n'
            % (evil.sha256.encode(), len(evil.data)))  # fmt: skip
    refused = _post_commit(hub, repo, body)
    assert refused.status_code == 400 and refused.headers["x-error-code"] == "UnsafeFile", refused.text

    header = json.dumps({"t0": {"dtype": "U8", "shape": [90_000]}}).encode()  # no data_offsets: suspicious
    odd = Upload(len(header).to_bytes(8, "little") + header + opaque_bytes(90_000))
    _commit_upload(hub, repo, odd, "odd.safetensors")
    head = httpx.head(f"{hub.url}/{repo}/resolve/main/odd.safetensors")
    assert head.status_code == 200 and "x-xet-hash" not in head.headers
    assert httpx.get(f"{hub.url}/{repo}/resolve/main/odd.safetensors").status_code == 403
    listing = {i["path"]: i for i in httpx.get(f"{hub.url}/api/models/{repo}/tree/main").json()}
    assert "xetHash" not in listing["odd.safetensors"]
    read = _token(hub, repo, "read")
    url = f"{read['cas']}/v1/reconstructions/{odd.file_hex}"
    assert httpx.get(url, headers={"authorization": read["authorization"]}).status_code == 404


def test_concurrent_identical_uploads(hub: HubProcess, repo: str, db: Database) -> None:
    up = Upload(opaque_bytes(900_000))
    auth = _token(hub, repo)
    headers = {"authorization": auth["authorization"]}

    def post(path: str, body: bytes) -> list[httpx.Response]:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda _: httpx.post(f"{auth['cas']}{path}", content=body, headers=headers,
                                                      timeout=60), range(4)))  # fmt: skip

    xorbs = post(f"/v1/xorbs/default/{up.xorb_hex}", up.xorb)
    assert all(r.status_code == 200 for r in xorbs)
    assert sorted(r.json()["was_inserted"] for r in xorbs) == [False, False, False, True]
    shards = post("/v1/shards", up.shard())
    assert all(r.status_code == 200 for r in shards)
    assert sorted(r.json()["result"] for r in shards) == [0, 0, 0, 1]
    with db.read() as session:
        assert session.get(XetFile, up.file_hex) is not None
