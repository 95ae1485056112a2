"""Test keys and an offline PKI: EC keys as PEM files, and a root CA → intermediate → code-signing leaf chain."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CURVES", "KeyPair", "Pki", "make_certificate", "make_key", "make_pki"]

CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    private: Path
    public: Path


def make_key(directory: Path, name: str, curve: str = "P-256") -> KeyPair:
    """A fresh EC key written as ``name.pem`` (PKCS#8) and ``name.pub.pem`` (SubjectPublicKeyInfo)."""
    key = ec.generate_private_key(CURVES[curve])
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return KeyPair(key, private, public)


def _usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    purposes: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CODE_SIGNING,),
) -> x509.Certificate:
    """A certificate valid from an hour ago for a day; CAs get keyCertSign, leaves digitalSignature + ``purposes``."""
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(_usage(sign=not ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if not ca and purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(purposes)), critical=False)
    return builder.sign(issuer_key, hashes.SHA384() if isinstance(issuer_key.curve, ec.SECP384R1) else hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    """PEM files: ``root`` (trust anchor), ``intermediate``, ``leaf`` certificate and its private ``leaf_key``."""

    root: Path
    intermediate: Path
    leaf: Path
    leaf_key: Path


def _pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def make_pki(
    directory: Path,
    name: str = "pki",
    *,
    leaf_curve: str = "P-256",
    purposes: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CODE_SIGNING,),
) -> Pki:
    """A P-384 root, a P-256 intermediate and a leaf on ``leaf_curve`` for code signing (or ``purposes``)."""
    directory.mkdir(parents=True, exist_ok=True)
    root_key, inter_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
    root = make_certificate(f"{name} root", root_key, None, root_key, ca=True)
    inter = make_certificate(f"{name} intermediate", inter_key, root, root_key, ca=True)
    leaf_pair = make_key(directory, f"{name}-leaf", leaf_curve)
    leaf = make_certificate(f"{name} signer", leaf_pair.key, inter, inter_key, ca=False, purposes=purposes)
    return Pki(
        _pem(directory / f"{name}-root.pem", root),
        _pem(directory / f"{name}-intermediate.pem", inter),
        _pem(directory / f"{name}-leaf.crt", leaf),
        leaf_pair.private,
    )
