"""The in-toto Statement v1 that model-signing bundles carry: one subject, a serialization and the resources.

The subject is the model's name (its directory's name, informative only) with a sha256 over the raw digest bytes of
every resource in the order listed; ``predicate.resources`` holds ``{name, algorithm, digest}`` per file or shard.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openckpt.errors import SignatureError
from openckpt.signing.serialize import Resource, Serialization, shard_of

__all__ = ["PAYLOAD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "Statement", "root_digest"]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def root_digest(resources: Sequence[Resource]) -> str:
    """sha256 over the concatenated raw digests, in order: the subject's digest."""
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r.digest))
    return h.hexdigest()


@dataclass(frozen=True)
class Statement:
    """What a model signature says: the model's name, how it was serialized, and each resource's digest."""

    name: str
    serialization: Serialization
    resources: tuple[Resource, ...]

    @property
    def digest(self) -> str:
        """The subject's sha256: one digest for the whole model."""
        return root_digest(self.resources)

    def to_json(self) -> bytes:
        """The DSSE payload: UTF-8 JSON, two-space indented like ``model_signing``'s."""
        statement = {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.name, "digest": {"sha256": self.digest}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "serialization": self.serialization.to_json(),
                "resources": [{"name": r.name, "algorithm": r.algorithm, "digest": r.digest} for r in self.resources],
            },
        }
        return json.dumps(statement, indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, payload: bytes) -> Statement:
        """Parse and check a payload: types, one subject whose sha256 matches the resources, well-formed resources."""
        try:
            obj = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SignatureError(f"the signed payload is not JSON: {e}") from None
        try:
            return _parse(obj)
        except (KeyError, TypeError, ValueError) as e:
            problem = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise SignatureError(f"the signed statement is malformed: {problem}") from None


def _parse(obj: Any) -> Statement:
    if obj["_type"] != STATEMENT_TYPE:
        raise ValueError(f"_type is {obj['_type']!r}, expected {STATEMENT_TYPE}")
    if obj["predicateType"] != PREDICATE_TYPE:
        raise ValueError(f"predicateType is {obj['predicateType']!r}, expected {PREDICATE_TYPE}")
    subjects = obj["subject"]
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise ValueError("expected exactly one subject")
    name, expected = subjects[0]["name"], subjects[0]["digest"]["sha256"]
    predicate = obj["predicate"]
    serialization = Serialization.from_json(predicate["serialization"])
    resources: list[Resource] = []
    seen: set[str] = set()
    for item in predicate["resources"]:
        r = Resource(item["name"], item["algorithm"], item["digest"])
        if not all(isinstance(v, str) for v in (r.name, r.algorithm, r.digest)):
            raise ValueError("resource fields must be strings")
        if r.algorithm != serialization.algorithm:
            raise ValueError(
                f"resource {r.name!r} uses {r.algorithm}, the serialization says {serialization.algorithm}"
            )
        bytes.fromhex(r.digest)
        if serialization.method == "shards":
            shard_of(r.name)
        if r.name in seen:
            raise ValueError(f"resource {r.name!r} is listed twice")
        seen.add(r.name)
        resources.append(r)
    statement = Statement(str(name), serialization, tuple(resources))
    if statement.digest != expected:
        raise ValueError(f"the subject digest {expected} is not the digest of the listed resources")
    return statement
