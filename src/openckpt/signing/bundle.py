"""Sigstore bundle v0.3 (JSON): a DSSE envelope plus the material to verify it, without transparency-log entries.

``verificationMaterial`` holds either ``publicKey.hint`` (key signing) or ``x509CertificateChain`` with the signing
certificate first (certificate signing), as ``model_signing`` writes them; a single ``certificate`` is read too.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from openckpt.errors import SignatureError
from openckpt.signing.dsse import Envelope

__all__ = ["MEDIA_TYPE", "Bundle"]

MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_MEDIA_TYPES = (MEDIA_TYPE, "application/vnd.dev.sigstore.bundle+json;version=0.3")


@dataclass(frozen=True)
class Bundle:
    """A signed envelope with a key hint or a certificate chain (signing certificate first)."""

    envelope: Envelope
    key_hint: str | None = None
    certificates: tuple[x509.Certificate, ...] = ()

    def to_json(self) -> bytes:
        material: dict[str, Any]
        if self.certificates:
            der = [base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in self.certificates]
            material = {"x509CertificateChain": {"certificates": [{"rawBytes": d} for d in der]}}
        else:
            material = {"publicKey": {"hint": self.key_hint or ""}}
        material["tlogEntries"] = []
        bundle = {"mediaType": MEDIA_TYPE, "verificationMaterial": material, "dsseEnvelope": self.envelope.to_json()}
        return json.dumps(bundle, separators=(",", ":")).encode()

    @classmethod
    def read(cls, path: Path) -> Bundle:
        """Parse a bundle file; :class:`SignatureError` names what is wrong with it."""
        try:
            obj = json.loads(path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SignatureError(f"not a Sigstore bundle: not JSON ({e})", path=path) from None
        if not isinstance(obj, dict):
            raise SignatureError("not a Sigstore bundle: not a JSON object", path=path)
        if obj.get("mediaType") not in _MEDIA_TYPES:
            raise SignatureError(f"mediaType is {obj.get('mediaType')!r}, expected {MEDIA_TYPE}", path=path)
        if not isinstance(obj.get("dsseEnvelope"), dict):
            raise SignatureError("the bundle holds no dsseEnvelope (a model signature is a DSSE envelope)", path=path)
        try:
            envelope = Envelope.from_json(obj["dsseEnvelope"])
        except SignatureError as e:
            raise SignatureError(str(e), path=path) from None
        material = obj.get("verificationMaterial")
        if not isinstance(material, dict):
            raise SignatureError("the bundle holds no verificationMaterial", path=path)
        try:
            if "x509CertificateChain" in material:
                raw = [c["rawBytes"] for c in material["x509CertificateChain"]["certificates"]]
            elif "certificate" in material:
                raw = [material["certificate"]["rawBytes"]]
            else:
                hint = (material.get("publicKey") or {}).get("hint")
                return cls(envelope, key_hint=hint if isinstance(hint, str) and hint else None)
            certs = tuple(x509.load_der_x509_certificate(base64.b64decode(r, validate=True)) for r in raw)
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise SignatureError(f"malformed certificates in the bundle: {type(e).__name__} {e}", path=path) from None
        return cls(envelope, certificates=certs)
