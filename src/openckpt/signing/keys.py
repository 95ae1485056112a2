"""Keys and certificates: PEM loading, key hints, and offline X.509 chain verification.

Keys are elliptic-curve P-256, P-384 or P-521 (what ``model_signing`` and Sigstore's key details allow). A key's hint
is the sha256 of its PEM SubjectPublicKeyInfo, as ``model_signing`` writes it into ``publicKey.hint``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from openckpt.errors import SigningKeyError, UntrustedSignatureError

__all__ = [
    "PathLike",
    "check_signing_certificate",
    "describe",
    "ecdsa",
    "key_hint",
    "load_certificates",
    "load_private_key",
    "load_public_key",
    "verify_chain",
]

PathLike = str | os.PathLike[str]
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _read(path: PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise SigningKeyError(f"cannot read: {e.strerror}", path=Path(path)) from None


def _check_curve(key: object, where: PathLike | None) -> None:
    path = Path(where) if where is not None else None
    if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        kind = type(key).__name__.lstrip("_").replace("PublicKey", "").replace("PrivateKey", "") or "unknown"
        raise SigningKeyError(f"{kind} keys are not supported; use an EC P-256, P-384 or P-521 key", path=path)
    if key.curve.name not in _HASHES:
        raise SigningKeyError(f"curve {key.curve.name} is not supported; use P-256, P-384 or P-521", path=path)


def load_private_key(
    key: PathLike | ec.EllipticCurvePrivateKey, password: str | None = None
) -> ec.EllipticCurvePrivateKey:
    """An EC private key from a PEM file (PKCS#8 or SEC1, optionally encrypted with ``password``)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _check_curve(key, None)
        return key
    try:
        loaded = serialization.load_pem_private_key(_read(key), password.encode() if password else None)
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"not a usable PEM private key: {e}", path=Path(key)) from None
    _check_curve(loaded, key)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


def load_public_key(key: PathLike | ec.EllipticCurvePublicKey) -> ec.EllipticCurvePublicKey:
    """An EC public key from a PEM file holding a public key or a certificate."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        _check_curve(key, None)
        return key
    data = _read(key)
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            loaded: object = x509.load_pem_x509_certificate(data).public_key()
        else:
            loaded = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise SigningKeyError(f"not a PEM public key or certificate: {e}", path=Path(key)) from None
    _check_curve(loaded, key)
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    return loaded


def key_hint(key: ec.EllipticCurvePublicKey) -> str:
    """sha256 (hex) of the key's PEM SubjectPublicKeyInfo: ``verificationMaterial.publicKey.hint``."""
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def ecdsa(key: ec.EllipticCurvePublicKey) -> ec.ECDSA:
    """ECDSA with the hash that matches the curve."""
    return ec.ECDSA(_HASHES[key.curve.name]())


def describe(key: ec.EllipticCurvePublicKey) -> str:
    """``P-256 key hint 1a2b3c4d5e6f7a8b…``."""
    return f"{_CURVE_NAMES[key.curve.name]} key hint {key_hint(key)[:16]}…"


def load_certificates(paths: Iterable[PathLike]) -> list[x509.Certificate]:
    """Every certificate in the given PEM files, in order."""
    certs: list[x509.Certificate] = []
    for path in paths:
        data = _read(path)
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise SigningKeyError("no PEM certificate in the file", path=Path(path))
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise SigningKeyError(f"not a PEM certificate file: {e}", path=Path(path)) from None
        certs += found
    return certs


def check_signing_certificate(cert: x509.Certificate) -> None:
    """RFC 5280 usage for signing: keyUsage, if present, has digitalSignature; extendedKeyUsage, if present, has
    codeSigning (or anyExtendedKeyUsage)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        if not usage.digital_signature:
            raise UntrustedSignatureError(f"certificate {_subject(cert)} may not sign: keyUsage lacks digitalSignature")
    try:
        purposes = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(purposes):
        raise UntrustedSignatureError(
            f"certificate {_subject(cert)} may not sign code: extendedKeyUsage lacks codeSigning"
        )


def _subject(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


def verify_chain(chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Build and check the path from ``chain[0]`` (the signing certificate) through ``chain[1:]`` to one of ``roots``.

    Web PKI rules for the CAs (basicConstraints, keyUsage, path length, allowed algorithms); the leaf needs no
    subjectAltName and is checked by :func:`check_signing_certificate`. Offline there is no trusted signing time, so,
    like ``model_signing``, validity is checked as of the leaf's notBefore: a chain that was valid when the leaf was
    issued still verifies after the leaf expires. Returns the path, leaf first.
    """
    if not chain:
        raise UntrustedSignatureError("the signature carries no certificate")
    if not roots:
        raise SigningKeyError("no trusted root certificates given")
    leaf = chain[0]
    agnostic = verification.Criticality.AGNOSTIC
    ee_policy = (
        verification.ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, agnostic, None)
        .may_be_present(x509.SubjectAlternativeName, agnostic, None)
    )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(leaf.not_valid_before_utc)
        .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        path = verifier.verify(leaf, list(chain[1:]))
    except verification.VerificationError as e:
        detail = str(e).split(" (encountered", 1)[0]
        raise UntrustedSignatureError(
            f"certificate {_subject(leaf)} does not chain to the given roots: {detail}"
        ) from None
    check_signing_certificate(leaf)
    return list(path.chain)
