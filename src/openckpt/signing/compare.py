"""What differs between the signed resources and the model on disk, one line per file.

``file weights.bin: digest differs``, ``missing file: config.json``, ``extra file: notes.txt``; a rename is a missing
and an extra file, and the extra one names the missing one with the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openckpt.signing.serialize import Resource, shard_of

__all__ = ["differences"]


@dataclass(frozen=True)
class _File:
    """A file as the resources describe it: its digests (one per shard) and, for shards, its size."""

    digests: tuple[str, ...]
    shards: tuple[tuple[int, int], ...] = ()

    @property
    def size(self) -> int | None:
        return self.shards[-1][1] if self.shards else None


def _files(resources: Sequence[Resource], sharded: bool) -> dict[str, _File]:
    if not sharded:
        return {r.name: _File((r.digest,)) for r in resources}
    parts: dict[str, list[tuple[int, int, str]]] = {}
    for r in resources:
        path, start, end = shard_of(r.name)
        parts.setdefault(path, []).append((start, end, r.digest))
    out = {}
    for path, shards in parts.items():
        shards.sort()
        out[path] = _File(tuple(d for _, _, d in shards), tuple((s, e) for s, e, _ in shards))
    return out


def _changed(name: str, signed: _File, found: _File) -> str:
    if signed.size != found.size:
        return f"file {name}: size differs (signed {signed.size} bytes, found {found.size})"
    if signed.shards != found.shards:
        return f"file {name}: shards differ"
    if len(signed.shards) > 1:
        ranges = [
            f"{s}:{e}" for (s, e), a, b in zip(signed.shards, signed.digests, found.digests, strict=True) if a != b
        ]
        shown = ", ".join(ranges[:3]) + (f" and {len(ranges) - 3} more" if len(ranges) > 3 else "")
        return f"file {name}: digest differs (bytes {shown})"
    return f"file {name}: digest differs"


def differences(
    signed: Sequence[Resource], found: Sequence[Resource], *, sharded: bool, problems: Sequence[str] = ()
) -> list[str]:
    """Each way the model on disk differs from the signed resources; empty when they match.

    A file is only as visible as its resources: in ``shards`` serialization an empty file has none, so an empty file
    that appears, disappears or is renamed goes unnoticed (as with ``model_signing``).
    """
    expected, actual = _files(signed, sharded), _files(found, sharded)
    out = [
        _changed(n, expected[n], actual[n]) for n in sorted(expected.keys() & actual.keys()) if expected[n] != actual[n]
    ]
    missing = sorted(expected.keys() - actual.keys())
    by_content: dict[tuple[str, ...], list[str]] = {}
    for name in missing:
        by_content.setdefault(expected[name].digests, []).append(name)
    out += [f"missing file: {name}" for name in missing]
    for name in sorted(actual.keys() - expected.keys()):
        same = by_content.get(actual[name].digests)
        hint = f" (same bytes as missing {', '.join(same)}: renamed?)" if same else ""
        out.append(f"extra file: {name}{hint}")
    return out + list(problems)
