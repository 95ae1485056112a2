"""Interoperability with the OpenSSF reference, ``model_signing`` 1.1.1: it verifies ours, we verify its.

Its CLI covers key and certificate signing of whole files with sha256; blake3 and shards go through its Python API
(its CLI always verifies with the default files/sha256 hashing). Besides verification both ways, the statements
both tools write for the same model must agree: subject digest, resources in order, serialization.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from openckpt.errors import ModelMismatchError, UntrustedSignatureError
from openckpt.signing import sign, verify

from .conftest import SHARD, ModelSigning
from .pki import KeyPair, Pki, make_key, make_pki
from .test_roundtrip import SIGNED

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

THEIR_SIGN = """
hashing = model_signing.hashing.Config().set_ignored_paths(paths=["model.sig"])
if method == "shards":
    hashing.use_shard_serialization(hashing_algorithm=hash_type, shard_size=shard_size)
else:
    hashing.use_file_serialization(hashing_algorithm=hash_type)
model_signing.signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(hashing).sign(
    model, model + "/model.sig"
)
"""

THEIR_VERIFY = """
# No hashing config: model_signing takes it from the signature (method, hash, shard size, ignore paths).
model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key).verify(model, model + "/model.sig")
print("verified")
"""

METHODS = [("files", "sha256"), ("files", "blake3"), ("shards", "sha256")]


def _ok(result: Any) -> None:
    assert result.returncode == 0, f"stdout: {result.stdout}\nstderr: {result.stderr}"


def _statement(signature: Path) -> dict[str, Any]:
    bundle = json.loads(signature.read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    statement: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return statement


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_their_cli_verifies_ours(tmp_path: Path, model: Path, model_signing: ModelSigning, curve: str) -> None:
    pair = make_key(tmp_path, "k", curve)
    sig = sign(model, key=pair.private)
    _ok(model_signing.cli("verify", "key", model, "--public_key", pair.public, "--signature", sig))
    (model / "weights.bin").write_bytes(b"tampered")
    result = model_signing.cli("verify", "key", model, "--public_key", pair.public, "--signature", sig)
    assert result.returncode != 0 and "weights.bin" in result.stderr


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
def test_we_verify_their_cli(tmp_path: Path, model: Path, model_signing: ModelSigning, curve: str) -> None:
    pair = make_key(tmp_path, "k", curve)
    _ok(model_signing.cli("sign", "key", model, "--private_key", pair.private, "--signature", model / "model.sig"))
    assert verify(model, public_key=pair.public).files == SIGNED
    (model / "notes.txt").write_text("extra\n")
    with pytest.raises(ModelMismatchError, match=r"extra file: notes\.txt"):
        verify(model, public_key=pair.public)


@pytest.mark.parametrize(("method", "hash_type"), METHODS)
def test_their_api_verifies_ours(
    model: Path, keys: KeyPair, model_signing: ModelSigning, method: str, hash_type: str
) -> None:
    sign(model, key=keys.private, serialization=method, hash_type=hash_type, shard_size=SHARD)  # type: ignore[arg-type]
    result = model_signing.python(THEIR_VERIFY, model=str(model), key=str(keys.public))
    _ok(result)
    assert "verified" in result.stdout


@pytest.mark.parametrize(("method", "hash_type"), [*METHODS, ("files", "blake2"), ("shards", "blake2")])
def test_we_verify_their_api(
    model: Path, keys: KeyPair, model_signing: ModelSigning, method: str, hash_type: str
) -> None:
    params = {"model": str(model), "key": str(keys.private), "method": method, "hash_type": hash_type}
    _ok(model_signing.python(THEIR_SIGN, **params, shard_size=SHARD))
    result = verify(model, public_key=keys.public)
    # model_signing records blake2 as blake2b; openckpt verifies it but does not sign with it.
    assert (result.serialization.method, result.serialization.hash_type) == (
        method,
        {"blake2": "blake2b"}.get(hash_type, hash_type),
    )
    (model / "config.json").unlink()
    with pytest.raises(ModelMismatchError, match=r"missing file: config\.json"):
        verify(model, public_key=keys.public)


@pytest.mark.parametrize(("method", "hash_type"), METHODS)
def test_same_statement(model: Path, keys: KeyPair, model_signing: ModelSigning, method: str, hash_type: str) -> None:
    """Both tools describe the same model identically (ignore_paths order and shard_size's float aside)."""
    ours = _statement(sign(model, key=keys.private, serialization=method, hash_type=hash_type, shard_size=SHARD))  # type: ignore[arg-type]
    (model / "model.sig").unlink()
    params = {"model": str(model), "key": str(keys.private), "method": method, "hash_type": hash_type}
    _ok(model_signing.python(THEIR_SIGN, **params, shard_size=SHARD))
    theirs = _statement(model / "model.sig")
    assert ours["_type"] == theirs["_type"] == "https://in-toto.io/Statement/v1"
    assert ours["predicateType"] == theirs["predicateType"] == "https://model_signing/signature/v1.0"
    assert ours["subject"] == theirs["subject"]
    assert ours["predicate"]["resources"] == theirs["predicate"]["resources"]
    for serialization in (ours["predicate"]["serialization"], theirs["predicate"]["serialization"]):
        serialization["ignore_paths"] = sorted(serialization["ignore_paths"])
        if "shard_size" in serialization:
            serialization["shard_size"] = int(serialization["shard_size"])  # model_signing writes 65536.0
    assert ours["predicate"]["serialization"] == theirs["predicate"]["serialization"]


def test_key_hint_matches(model: Path, keys: KeyPair, model_signing: ModelSigning) -> None:
    ours = json.loads(sign(model, key=keys.private).read_text())["verificationMaterial"]
    _ok(model_signing.cli("sign", "key", model, "--private_key", keys.private, "--signature", model / "model.sig"))
    theirs = json.loads((model / "model.sig").read_text())["verificationMaterial"]
    assert ours == theirs == {"publicKey": {"hint": ours["publicKey"]["hint"]}, "tlogEntries": []}


def test_certificates_both_ways(tmp_path: Path, model: Path, pki: Pki, model_signing: ModelSigning) -> None:
    ours = tmp_path / "ours.sig"
    sign(model, key=pki.leaf_key, certificate=pki.leaf, chain=[pki.intermediate], signature=ours)
    _ok(model_signing.cli("verify", "certificate", model, "--signature", ours, "--certificate_chain", pki.root))

    theirs = tmp_path / "theirs.sig"
    sign_args = [
        "--private_key",
        pki.leaf_key,
        "--signing_certificate",
        pki.leaf,
        "--certificate_chain",
        pki.intermediate,
    ]
    _ok(model_signing.cli("sign", "certificate", model, *sign_args, "--signature", theirs))
    assert (
        json.loads(theirs.read_text())["verificationMaterial"] == json.loads(ours.read_text())["verificationMaterial"]
    )
    assert len(verify(model, signature=theirs, roots=pki.root).certificates) == 3
    other = make_pki(tmp_path / "other", "other")
    with pytest.raises(UntrustedSignatureError, match="does not chain"):
        verify(model, signature=theirs, roots=other.root)


def test_stricter_than_model_signing_on_certificate_purpose(
    tmp_path: Path, model: Path, model_signing: ModelSigning
) -> None:
    """model_signing accepts any certificate with keyUsage digitalSignature, e.g. a TLS server's; openckpt requires
    extendedKeyUsage codeSigning when the certificate restricts its purposes (RFC 5280 4.2.1.12)."""
    tls = make_pki(tmp_path / "tls", "tls", purposes=(ExtendedKeyUsageOID.SERVER_AUTH,))
    sig = tmp_path / "tls.sig"
    sign_args = [
        "--private_key",
        tls.leaf_key,
        "--signing_certificate",
        tls.leaf,
        "--certificate_chain",
        tls.intermediate,
    ]
    _ok(model_signing.cli("sign", "certificate", model, *sign_args, "--signature", sig))
    _ok(model_signing.cli("verify", "certificate", model, "--signature", sig, "--certificate_chain", tls.root))
    with pytest.raises(UntrustedSignatureError, match="extendedKeyUsage lacks codeSigning"):
        verify(model, signature=sig, roots=tls.root)
