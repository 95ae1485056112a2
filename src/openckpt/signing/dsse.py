"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, v1): the payload, its type and ECDSA signatures.

Signatures are over PAE(type, payload) = ``DSSEv1 <len type> <type> <len payload> <payload>``, ECDSA with the hash
that goes with the curve (P-256 → SHA-256, P-384 → SHA-384, P-521 → SHA-512), DER-encoded, base64 in JSON.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from openckpt.errors import SignatureError
from openckpt.signing.keys import ecdsa

__all__ = ["Envelope", "pae"]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A payload, its type and one or more raw (DER) signatures over its PAE."""

    payload: bytes
    payload_type: str
    signatures: tuple[bytes, ...]

    @classmethod
    def sign(cls, payload: bytes, payload_type: str, key: ec.EllipticCurvePrivateKey) -> Envelope:
        return cls(payload, payload_type, (key.sign(pae(payload_type, payload), ecdsa(key.public_key())),))

    def verify(self, key: ec.EllipticCurvePublicKey) -> bool:
        """Whether any signature verifies with ``key``."""
        message = pae(self.payload_type, self.payload)
        for sig in self.signatures:
            try:
                key.verify(sig, message, ecdsa(key))
            except InvalidSignature:
                continue
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [{"sig": base64.b64encode(s).decode(), "keyid": ""} for s in self.signatures],
        }

    @classmethod
    def from_json(cls, obj: Any) -> Envelope:
        try:
            sigs = tuple(_b64(s["sig"]) for s in obj["signatures"])
            envelope = cls(_b64(obj["payload"]), str(obj["payloadType"]), sigs)
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise SignatureError(f"malformed DSSE envelope: {type(e).__name__} {e}") from None
        if not envelope.signatures:
            raise SignatureError("the DSSE envelope holds no signature")
        return envelope


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("expected a base64 string")
    return base64.b64decode(value, validate=True)
