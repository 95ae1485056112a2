"""OpenSSF model-signing bundles (Sigstore bundle v0.3, DSSE, in-toto): sign a model directory, verify it, offline.

Inside: ``serialize`` (files → resources) → ``statement`` (in-toto) → ``keys``, ``dsse`` → ``bundle`` → ``api``;
``compare`` words the differences between a signed model and the one on disk.
"""

from __future__ import annotations

from openckpt.signing.api import SIGNATURE_NAME, VerifiedSignature, sign, verify

verify_signature = verify
"""``openckpt.verify_signature``: :func:`verify` under a name that does not clash with checkpoint verification."""

__all__ = ["SIGNATURE_NAME", "VerifiedSignature", "sign", "verify", "verify_signature"]
