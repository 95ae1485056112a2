"""Sign and verify round trips: files and shards, sha256 and blake3, P-256/P-384/P-521 keys, X.509 chains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import openckpt
from openckpt.errors import FormatError, ModelMismatchError, SigningKeyError
from openckpt.signing import VerifiedSignature, sign, verify
from openckpt.signing.keys import key_hint

from .conftest import SHARD
from .pki import KeyPair, Pki, make_key, make_pki

SIGNED = ("config.json", "empty.txt", "sub/tokenizer.json", "sub.txt", "weights.bin")
"""Every file of the test model except git's, in model_signing's order (path components, not strings)."""


@pytest.mark.parametrize(
    ("serialization", "hash_type"), [("files", "sha256"), ("files", "blake3"), ("shards", "sha256")]
)
@pytest.mark.parametrize("curve", ["P-256", "P-384", "P-521"])
def test_key_round_trip(tmp_path: Path, model: Path, serialization: str, hash_type: str, curve: str) -> None:
    pair = make_key(tmp_path, "k", curve)
    sig = sign(model, key=pair.private, serialization=serialization, hash_type=hash_type, shard_size=SHARD)  # type: ignore[arg-type]
    assert sig == model / "model.sig"
    result = verify(model, public_key=pair.public)
    assert isinstance(result, VerifiedSignature)
    assert result.name == "model"
    assert result.serialization.method == serialization
    assert result.serialization.hash_type == hash_type
    assert result.key_hint == key_hint(pair.key.public_key())
    assert result.certificates == ()
    # In shards, an empty file has no shard and so no resource, exactly as in model_signing.
    expected = [f for f in SIGNED if serialization == "files" or f != "empty.txt"]
    assert list(result.files) == expected


def test_chain_round_trip(tmp_path: Path, model: Path, pki: Pki) -> None:
    sig = tmp_path / "model.sig"
    sign(model, key=pki.leaf_key, certificate=pki.leaf, chain=[pki.intermediate], signature=sig)
    result = verify(model, signature=sig, roots=pki.root)
    assert [c.subject.rfc4514_string() for c in result.certificates] == [
        "CN=pki signer",
        "CN=pki intermediate",
        "CN=pki root",
    ]
    # The intermediate may be the trust anchor too, and the leaf certificate serves as a public key.
    assert verify(model, signature=sig, roots=[pki.intermediate]).certificates[-1].subject.rfc4514_string() == (
        "CN=pki intermediate"
    )
    verify(model, signature=sig, public_key=pki.leaf)


def test_chain_in_one_file_and_p384_leaf(tmp_path: Path, model: Path) -> None:
    pki = make_pki(tmp_path / "p384", leaf_curve="P-384")
    bundle = tmp_path / "leaf-and-chain.pem"
    bundle.write_bytes(pki.leaf.read_bytes() + pki.intermediate.read_bytes())
    sign(model, key=pki.leaf_key, certificate=bundle, hash_type="blake3")
    assert len(verify(model, roots=pki.root).certificates) == 3


def test_top_level_exports(model: Path, keys: KeyPair) -> None:
    openckpt.sign(model, key=keys.private)
    assert openckpt.verify_signature(model, public_key=keys.public).files == SIGNED
    assert "sign" in openckpt.__all__ and "verify_signature" in openckpt.__all__


def test_signature_elsewhere_and_relative_model_path(
    tmp_path: Path, model: Path, keys: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(model)
    sign(".", key=keys.private, signature="../sig.json")
    assert (tmp_path / "sig.json").exists() and not (model / "model.sig").exists()
    result = verify(".", signature=tmp_path / "sig.json", public_key=keys.public)
    assert result.name == "model" and result.files == SIGNED


def test_ignore_rules(model: Path, keys: KeyPair) -> None:
    (model / "notes").mkdir()
    (model / "notes" / "draft.md").write_text("not part of the model\n")
    (model / "README.md").write_text("readme\n")
    sign(model, key=keys.private, ignore=["notes", "README.md"])
    # Ignored paths are recorded in the signature, so they may change freely afterwards ...
    (model / "notes" / "draft.md").write_text("changed\n")
    (model / "README.md").unlink()
    (model / ".git" / "HEAD").write_text("changed\n")
    result = verify(model, public_key=keys.public)
    assert set(result.serialization.ignore_paths) == {
        ".git",
        ".gitattributes",
        ".github",
        ".gitignore",
        "README.md",
        "model.sig",
        "notes",
    }
    # ... and a verifier may skip more, explicitly.
    (model / "scratch.txt").write_text("local\n")
    verify(model, public_key=keys.public, ignore=["scratch.txt"])


def test_git_files_signed_on_request(model: Path, keys: KeyPair) -> None:
    sign(model, key=keys.private, ignore_git=False)
    assert verify(model, public_key=keys.public).files == (".git/HEAD", ".gitattributes", *SIGNED)
    (model / ".gitattributes").write_text("changed\n")
    with pytest.raises(ModelMismatchError, match=r"file \.gitattributes: digest differs"):
        verify(model, public_key=keys.public)


def test_symlinks_refused_unless_allowed(model: Path, keys: KeyPair) -> None:
    os.symlink("weights.bin", model / "alias.bin")
    with pytest.raises(FormatError, match=r"symlink: alias\.bin -> weights\.bin"):
        sign(model, key=keys.private)
    sign(model, key=keys.private, allow_symlinks=True)
    result = verify(model, public_key=keys.public)
    assert "alias.bin" in result.files and result.serialization.allow_symlinks


def test_key_problems(tmp_path: Path, model: Path, pki: Pki, keys: KeyPair) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ed = tmp_path / "ed25519.pem"
    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(SigningKeyError, match="Ed25519 keys are not supported"):
        sign(model, key=ed)
    with pytest.raises(SigningKeyError, match="not a usable PEM private key"):
        sign(model, key=keys.public)
    with pytest.raises(SigningKeyError, match="certificate's public key is not the signing key's"):
        sign(model, key=keys.private, certificate=pki.leaf)
    with pytest.raises(ValueError, match="blake3 already hashes"):
        sign(model, key=keys.private, serialization="shards", hash_type="blake3")
    with pytest.raises(ValueError, match="either public_key or roots"):
        verify(model, public_key=keys.public, roots=pki.root)
    assert not (model / "model.sig").exists()
