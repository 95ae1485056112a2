"""The bytes on the wire: DSSE PAE, key hints, the bundle's layout, the statement's names, order and digests."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from openckpt.signing import sign
from openckpt.signing.dsse import pae
from openckpt.signing.statement import Statement

from .conftest import SHARD
from .pki import KeyPair


def test_pae_matches_the_dsse_spec() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_bundle_layout_and_key_hint(model: Path, keys: KeyPair) -> None:
    bundle = json.loads(sign(model, key=keys.private).read_text())
    pem = keys.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": hashlib.sha256(pem).hexdigest()}, "tlogEntries": []}
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    [signature] = envelope["signatures"]
    assert signature["keyid"] == ""
    payload = base64.b64decode(envelope["payload"])
    keys.key.public_key().verify(
        base64.b64decode(signature["sig"]),
        pae("application/vnd.in-toto+json", payload),
        ec.ECDSA(hashes.SHA256()),
    )


def test_shard_statement(model: Path, keys: KeyPair) -> None:
    sig = sign(model, key=keys.private, serialization="shards", shard_size=SHARD)
    raw = base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"])
    statement = json.loads(raw)
    serialization = statement["predicate"]["serialization"]
    assert serialization["method"] == "shards" and serialization["hash_type"] == "sha256"
    assert serialization["shard_size"] == SHARD and isinstance(serialization["shard_size"], int)
    resources = statement["predicate"]["resources"]
    size = (model / "weights.bin").stat().st_size
    assert [r["name"] for r in resources if r["name"].startswith("weights.bin:")] == [
        f"weights.bin:{start}:{min(start + SHARD, size)}" for start in range(0, size, SHARD)
    ]
    assert {r["algorithm"] for r in resources} == {f"sha256-sharded-{SHARD}"}
    data = (model / "weights.bin").read_bytes()
    first = next(r for r in resources if r["name"] == f"weights.bin:0:{SHARD}")
    assert first["digest"] == hashlib.sha256(data[:SHARD]).hexdigest()
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    assert statement["subject"] == [{"name": "model", "digest": {"sha256": root}}]
    assert Statement.from_json(raw).digest == root
