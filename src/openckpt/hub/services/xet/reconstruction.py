"""Reconstruction answers (v1): which chunks of which xorbs make up a byte range of a file, and where to fetch them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openckpt.errors import BadRequestError, RangeNotSatisfiableError
from openckpt.hub.services.stored_files import ChunkSpan, FilePlan

__all__ = ["byte_range", "reconstruction"]


def byte_range(header: str | None, size: int) -> tuple[int, int]:
    """``[first, last]`` (inclusive) of a ``Range: bytes=…`` header over ``size`` bytes; the whole file without one.

    ``bytes=S-E``, ``bytes=S-`` and ``bytes=-N``; an end past the file is clamped to it.
    """
    spec = (header or "").replace(" ", "")
    if not spec:
        first, last = 0, size - 1
    else:
        if not spec.startswith("bytes=") or "," in spec:
            raise BadRequestError(f"invalid Range header {spec!r}: one range bytes=S-E, S- or -N")
        lo, _, hi = spec[6:].partition("-")
        if not (lo.isdigit() or (not lo and hi.isdigit())) or (hi and not hi.isdigit()):
            raise BadRequestError(f"invalid Range header {spec!r}")
        if lo:
            first, last = int(lo), min(int(hi), size - 1) if hi else size - 1
        else:
            first, last = max(size - int(hi), 0), size - 1
    if first >= size:
        raise RangeNotSatisfiableError(f"bytes {first}- are past the end of a file of {size} bytes")
    if first > last:
        raise BadRequestError(f"invalid Range header {spec!r}: it ends before it starts")
    return first, last


def reconstruction(plan: FilePlan, first: int, last: int, url: Callable[[str, int, int], str]) -> dict[str, Any]:
    """The v1 answer for bytes ``[first, last]``: the terms (whole chunks) covering them, and for each term a fetch
    entry whose ``url`` (from ``url(xorb, byte first, byte last)``) serves exactly its serialized chunks."""
    terms: list[dict[str, Any]] = []
    fetch: dict[str, list[dict[str, Any]]] = {}
    offset: int | None = None
    pos = 0
    for term in plan.terms:
        kept: list[ChunkSpan] = []
        kept_from = 0
        for chunk in term.chunks:
            chunk_pos, pos = pos, pos + chunk.size
            if pos <= first or chunk_pos > last:
                continue
            if not kept:
                kept_from = chunk_pos
            kept.append(chunk)
        if not kept:
            if pos > last:
                break
            continue
        if offset is None:
            offset = first - kept_from
        chunks = {"start": kept[0].index, "end": kept[-1].index + 1}
        terms.append({"hash": term.xorb, "unpacked_length": sum(c.size for c in kept), "range": chunks})
        span = (kept[0].byte_start, kept[-1].byte_end - 1)
        entries = fetch.setdefault(term.xorb, [])
        if not any(e["range"] == chunks for e in entries):
            entries.append(
                {"range": chunks, "url": url(term.xorb, *span), "url_range": {"start": span[0], "end": span[1]}}
            )
    return {"offset_into_first_range": offset or 0, "terms": terms, "fetch_info": fetch}
