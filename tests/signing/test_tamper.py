"""Every way a signed model or its signature can differ fails, with a message naming what differs."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from openckpt.errors import ModelMismatchError, SignatureError, SigningKeyError, UntrustedSignatureError
from openckpt.signing import sign, verify

from .conftest import SHARD
from .pki import KeyPair, Pki, make_pki

METHODS = pytest.mark.parametrize(
    ("serialization", "hash_type"), [("files", "sha256"), ("files", "blake3"), ("shards", "sha256")]
)


def _differences(model: Path, keys: KeyPair) -> list[str]:
    with pytest.raises(ModelMismatchError) as info:
        verify(model, public_key=keys.public)
    assert str(model) in str(info.value)
    assert all(d in str(info.value) for d in info.value.differences)
    return info.value.differences


def _sign(model: Path, keys: KeyPair, serialization: str, hash_type: str) -> None:
    sign(model, key=keys.private, serialization=serialization, hash_type=hash_type, shard_size=SHARD)  # type: ignore[arg-type]


@METHODS
def test_tampered_file(model: Path, keys: KeyPair, serialization: str, hash_type: str) -> None:
    _sign(model, keys, serialization, hash_type)
    data = bytearray((model / "weights.bin").read_bytes())
    data[SHARD + 7] ^= 0x01
    (model / "weights.bin").write_bytes(bytes(data))
    [diff] = _differences(model, keys)
    if serialization == "shards":
        assert diff == f"file weights.bin: digest differs (bytes {SHARD}:{2 * SHARD})"
    else:
        assert diff == "file weights.bin: digest differs"


@METHODS
def test_extra_file(model: Path, keys: KeyPair, serialization: str, hash_type: str) -> None:
    _sign(model, keys, serialization, hash_type)
    (model / "notes.txt").write_text("added after signing\n")
    assert _differences(model, keys) == ["extra file: notes.txt"]


@METHODS
def test_missing_file(model: Path, keys: KeyPair, serialization: str, hash_type: str) -> None:
    _sign(model, keys, serialization, hash_type)
    (model / "config.json").unlink()
    assert _differences(model, keys) == ["missing file: config.json"]


@METHODS
def test_renamed_file(model: Path, keys: KeyPair, serialization: str, hash_type: str) -> None:
    _sign(model, keys, serialization, hash_type)
    (model / "sub" / "tokenizer.json").rename(model / "tokenizer.json")
    assert _differences(model, keys) == [
        "missing file: sub/tokenizer.json",
        "extra file: tokenizer.json (same bytes as missing sub/tokenizer.json: renamed?)",
    ]


def test_truncated_file_in_shards(model: Path, keys: KeyPair) -> None:
    _sign(model, keys, "shards", "sha256")
    size = (model / "weights.bin").stat().st_size
    os.truncate(model / "weights.bin", size - 1)
    assert _differences(model, keys) == [f"file weights.bin: size differs (signed {size} bytes, found {size - 1})"]


def test_several_differences_at_once(model: Path, keys: KeyPair) -> None:
    sign(model, key=keys.private)
    (model / "config.json").write_text("{}\n")
    (model / "empty.txt").unlink()
    (model / "extra.bin").write_bytes(b"x")
    os.symlink("config.json", model / "link.json")
    assert _differences(model, keys) == [
        "file config.json: digest differs",
        "missing file: empty.txt",
        "extra file: extra.bin",
        "symlink: link.json -> config.json (symlinks are not signed)",
    ]


def test_wrong_key(model: Path, keys: KeyPair, other_keys: KeyPair) -> None:
    sign(model, key=keys.private)
    with pytest.raises(UntrustedSignatureError) as info:
        verify(model, public_key=other_keys.public)
    message = str(info.value)
    assert re.search(r"signature does not verify with the given key \(P-256 key hint [0-9a-f]{16}…\)", message)
    assert "the signature names key hint" in message


def test_tampered_payload(model: Path, keys: KeyPair) -> None:
    """Editing the signed statement (here: dropping a resource) breaks the signature, not just the digest."""
    sig = sign(model, key=keys.private)
    bundle = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"].pop()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(UntrustedSignatureError, match="does not verify with the given key"):
        verify(model, public_key=keys.public)


def test_malformed_bundles(model: Path, keys: KeyPair) -> None:
    sig = sign(model, key=keys.private)
    good = json.loads(sig.read_text())
    sig.write_text("not json")
    with pytest.raises(SignatureError, match="not a Sigstore bundle"):
        verify(model, public_key=keys.public)
    sig.write_text(json.dumps({**good, "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1"}))
    with pytest.raises(SignatureError, match="mediaType"):
        verify(model, public_key=keys.public)
    sig.write_text(json.dumps({k: v for k, v in good.items() if k != "dsseEnvelope"}))
    with pytest.raises(SignatureError, match="no dsseEnvelope"):
        verify(model, public_key=keys.public)
    sig.unlink()
    with pytest.raises(FileNotFoundError):
        verify(model, public_key=keys.public)


def test_untrusted_root(tmp_path: Path, model: Path, pki: Pki) -> None:
    sign(model, key=pki.leaf_key, certificate=pki.leaf, chain=[pki.intermediate])
    other = make_pki(tmp_path / "other", "other")
    with pytest.raises(UntrustedSignatureError, match="'CN=pki signer' does not chain to the given roots"):
        verify(model, roots=other.root)


def test_missing_intermediate(tmp_path: Path, model: Path, pki: Pki) -> None:
    sign(model, key=pki.leaf_key, certificate=pki.leaf)
    with pytest.raises(UntrustedSignatureError, match="does not chain to the given roots"):
        verify(model, roots=pki.root)


def test_certificate_not_for_code_signing(tmp_path: Path, model: Path) -> None:
    tls = make_pki(tmp_path / "tls", "tls", purposes=(ExtendedKeyUsageOID.SERVER_AUTH,))
    with pytest.raises(SigningKeyError, match="extendedKeyUsage lacks codeSigning"):
        sign(model, key=tls.leaf_key, certificate=tls.leaf, chain=[tls.intermediate])


def test_key_signature_checked_against_roots(model: Path, keys: KeyPair, pki: Pki) -> None:
    sign(model, key=keys.private)
    with pytest.raises(UntrustedSignatureError, match=r"made with a bare key .*verify it with a public key"):
        verify(model, roots=pki.root)


def test_signed_but_inconsistent_statement(model: Path, keys: KeyPair) -> None:
    """A validly signed statement whose subject digest does not cover its resources is refused as malformed."""
    from openckpt.signing.bundle import Bundle
    from openckpt.signing.dsse import Envelope
    from openckpt.signing.keys import key_hint
    from openckpt.signing.statement import PAYLOAD_TYPE

    sig = sign(model, key=keys.private)
    statement = json.loads(Bundle.read(sig).envelope.payload)
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    envelope = Envelope.sign(json.dumps(statement).encode(), PAYLOAD_TYPE, keys.key)
    sig.write_bytes(Bundle(envelope, key_hint(keys.key.public_key())).to_json())
    with pytest.raises(SignatureError, match=r"malformed: the subject digest 0+ is not the digest of the listed"):
        verify(model, public_key=keys.public)
