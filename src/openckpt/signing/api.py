"""Sign a model directory into an OpenSSF model-signing bundle, and verify one, offline.

The bundle is what ``model_signing sign key`` / ``sign certificate`` write and what ``model_signing verify`` reads:
a Sigstore bundle v0.3 whose DSSE envelope carries an in-toto statement listing every file (or shard) and digest.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from openckpt.errors import FormatError, ModelMismatchError, SignatureError, SigningKeyError, UntrustedSignatureError
from openckpt.fsutil import atomic_write
from openckpt.signing.bundle import Bundle
from openckpt.signing.compare import differences
from openckpt.signing.dsse import Envelope
from openckpt.signing.keys import (
    PathLike,
    check_signing_certificate,
    describe,
    key_hint,
    load_certificates,
    load_private_key,
    load_public_key,
    verify_chain,
)
from openckpt.signing.serialize import (
    DEFAULT_SHARD_SIZE,
    GIT_PATHS,
    HASHES,
    Resource,
    Serialization,
    hash_resources,
    list_files,
    normalize_ignore,
)
from openckpt.signing.statement import PAYLOAD_TYPE, Statement

__all__ = ["SIGNATURE_NAME", "VerifiedSignature", "sign", "verify"]

SIGNATURE_NAME = "model.sig"
"""Where the signature goes by default: inside the model directory, which signing and verifying then ignore."""


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: who signed (key hint, certificates) and what (the statement's files)."""

    name: str
    """The model name in the statement (the signed directory's name; informative only)."""
    digest: str
    """sha256 over every resource digest: one identifier for the signed model."""
    serialization: Serialization
    files: tuple[str, ...]
    key_hint: str
    """sha256 of the verifying public key's PEM."""
    certificates: tuple[x509.Certificate, ...] = ()
    """The verified path from the signing certificate to a trusted root; empty for key signatures."""


def _model_dir(model_dir: PathLike) -> Path:
    path = Path(model_dir)
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a model directory", str(path))
    return path


def _model_name(path: Path) -> str:
    return path.name if path.name not in ("", "..") else path.resolve().name


def _signing_chain(
    key: ec.EllipticCurvePrivateKey, certificate: PathLike | None, chain: Iterable[PathLike]
) -> tuple[x509.Certificate, ...]:
    if certificate is None:
        if list(chain):
            raise ValueError("a certificate chain needs the signing certificate (certificate=...)")
        return ()
    certs = load_certificates([certificate, *chain])
    if not certs:
        raise SigningKeyError("no certificate in the file", path=Path(certificate))
    if certs[0].public_key() != key.public_key():
        raise SigningKeyError("the certificate's public key is not the signing key's", path=Path(certificate))
    try:
        check_signing_certificate(certs[0])
    except UntrustedSignatureError as e:
        raise SigningKeyError(str(e), path=Path(certificate)) from None
    return tuple(certs)


def sign(  # noqa: PLR0913 — public API: each keyword is a documented option (and a CLI flag)
    model_dir: PathLike,
    *,
    key: PathLike | ec.EllipticCurvePrivateKey,
    signature: PathLike | None = None,
    certificate: PathLike | None = None,
    chain: Iterable[PathLike] = (),
    password: str | None = None,
    serialization: Literal["files", "shards"] = "files",
    hash_type: Literal["sha256", "blake3"] = "sha256",
    shard_size: int = DEFAULT_SHARD_SIZE,
    ignore: Iterable[PathLike] = (),
    ignore_git: bool = True,
    allow_symlinks: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Sign every file under ``model_dir`` with an EC private key; returns the signature's path.

    ``signature`` defaults to ``model_dir/model.sig``. With ``certificate`` (PEM; may also hold the intermediates)
    and ``chain`` (more PEM certificates), the bundle carries the X.509 chain instead of a key hint. ``ignore`` names
    paths inside the model (a directory covers its contents); ``.git``, ``.gitattributes``, ``.github`` and
    ``.gitignore`` are ignored unless ``ignore_git=False``, and the signature file always is. Symlinks are refused
    unless ``allow_symlinks`` (then a link to a file signs its target's bytes under the link's name).
    """
    root = _model_dir(model_dir)
    chain = list(chain)
    if hash_type not in HASHES:
        raise ValueError(f"unsupported hash {hash_type!r}; use one of {', '.join(HASHES)}")
    if serialization == "shards" and hash_type == "blake3":
        raise ValueError("blake3 already hashes each file on every core; sign blake3 with serialization='files'")
    private_key = load_private_key(key, password)
    certificates = _signing_chain(private_key, certificate, chain)
    sig_path = Path(signature) if signature is not None else root / SIGNATURE_NAME
    ignored = normalize_ignore(root, [*ignore, *(GIT_PATHS if ignore_git else ()), os.path.abspath(sig_path)])
    config = Serialization(
        serialization,
        hash_type,
        allow_symlinks,
        tuple(sorted(ignored)),
        shard_size if serialization == "shards" else None,
    )
    listing = list_files(root, ignore=ignored, allow_symlinks=allow_symlinks)
    if listing.problems:
        raise FormatError("cannot sign: " + "; ".join(listing.problems), path=root)
    resources = hash_resources(root, listing.files, config, progress=progress)
    statement = Statement(_model_name(root), config, tuple(resources))
    envelope = Envelope.sign(statement.to_json(), PAYLOAD_TYPE, private_key)
    hint = None if certificates else key_hint(private_key.public_key())
    atomic_write(sig_path, Bundle(envelope, hint, certificates).to_json())
    return sig_path


def _verifying_key(
    bundle: Bundle, public_key: PathLike | ec.EllipticCurvePublicKey | None, roots: PathLike | Iterable[PathLike] | None
) -> tuple[ec.EllipticCurvePublicKey, tuple[x509.Certificate, ...], str]:
    """The key to check the envelope with, the verified chain, and how to name the key in messages."""
    if public_key is not None:
        key = load_public_key(public_key)
        return key, (), f"the given key ({describe(key)})"
    if not bundle.certificates:
        hint = f" (key hint {bundle.key_hint[:16]}…)" if bundle.key_hint else ""
        raise UntrustedSignatureError(
            f"the signature was made with a bare key{hint}, not a certificate: verify it with a public key"
        )
    paths = [roots] if isinstance(roots, str | os.PathLike) else list(roots or ())
    path = verify_chain(bundle.certificates, load_certificates(paths))
    leaf_key = path[0].public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey):
        raise UntrustedSignatureError("the signing certificate's key is not an EC key")
    return leaf_key, tuple(path), f"the certificate {path[0].subject.rfc4514_string()!r} ({describe(leaf_key)})"


def verify(
    model_dir: PathLike,
    *,
    signature: PathLike | None = None,
    public_key: PathLike | ec.EllipticCurvePublicKey | None = None,
    roots: PathLike | Iterable[PathLike] | None = None,
    ignore: Iterable[PathLike] = (),
    progress: Callable[[int], None] | None = None,
) -> VerifiedSignature:
    """Check a model-signing bundle and that ``model_dir`` holds exactly the signed files, byte for byte.

    Give ``public_key`` (PEM public key or certificate) for key signatures, or ``roots`` (PEM files of trusted
    certificates) for certificate signatures. The signature's own ignore paths, the signature file and ``ignore``
    are skipped. Raises :class:`UntrustedSignatureError` when the signature is not by that key or chain,
    :class:`ModelMismatchError` naming every file that differs, :class:`SignatureError` for a malformed bundle.
    """
    if (public_key is None) == (roots is None):
        raise ValueError("give either public_key or roots")
    root = _model_dir(model_dir)
    sig_path = Path(signature) if signature is not None else root / SIGNATURE_NAME
    bundle = Bundle.read(sig_path)
    key, path, who = _verifying_key(bundle, public_key, roots)
    if not bundle.envelope.verify(key):
        named = f"; the signature names key hint {bundle.key_hint[:16]}…" if bundle.key_hint else ""
        raise UntrustedSignatureError(f"signature does not verify with {who}{named}", path=sig_path)
    if bundle.envelope.payload_type != PAYLOAD_TYPE:
        raise SignatureError(f"payload type {bundle.envelope.payload_type!r}, expected {PAYLOAD_TYPE}", path=sig_path)
    statement = Statement.from_json(bundle.envelope.payload)
    config = statement.serialization
    ignored = normalize_ignore(root, [*config.ignore_paths, os.path.abspath(sig_path), *ignore])
    listing = list_files(root, ignore=ignored, allow_symlinks=config.allow_symlinks)
    found: list[Resource] = hash_resources(root, listing.files, config, progress=progress)
    diffs = differences(statement.resources, found, sharded=config.method == "shards", problems=listing.problems)
    if diffs:
        count = f"{len(diffs)} difference{'s' if len(diffs) > 1 else ''}"
        raise ModelMismatchError(f"{count} from the signature: " + "; ".join(diffs), differences=diffs, path=root)
    files = tuple(dict.fromkeys(r.name.rsplit(":", 2)[0] if config.method == "shards" else r.name for r in found))
    return VerifiedSignature(statement.name, statement.digest, config, files, key_hint(key), path)
