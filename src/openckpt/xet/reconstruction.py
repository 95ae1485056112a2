"""Reconstruction arithmetic (spec §6.6): which chunks of which terms serve a byte range of a file.

Trimming is chunk-granular: a range keeps every chunk that overlaps it, the client skips
``offset_into_first_range`` bytes of the first kept chunk and trims the end itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from openckpt.errors import XetFormatError
from openckpt.xet.shard import FileTerm

__all__ = ["RangePlan", "RangeTerm", "merge_chunk_ranges", "plan_range"]


@dataclass(frozen=True)
class RangeTerm:
    """Chunks ``[chunk_start, chunk_end)`` of the xorb of file term ``term``: ``size`` bytes uncompressed."""

    term: int
    xorb_hash: bytes
    chunk_start: int
    chunk_end: int
    size: int


@dataclass(frozen=True)
class RangePlan:
    """The terms serving bytes ``start..end`` (inclusive) of a file, and where the range starts in the first."""

    terms: tuple[RangeTerm, ...]
    offset_into_first_range: int
    start: int
    end: int


def plan_range(terms: Sequence[FileTerm], chunk_sizes: Sequence[Sequence[int]], start: int, end: int) -> RangePlan:
    """Plan bytes ``start..end`` (inclusive; ``end`` clamped to the file) given each term's chunk sizes.

    ``chunk_sizes[i]`` lists the uncompressed sizes of chunks ``[chunk_start, chunk_end)`` of term ``i``. Raises
    ``ValueError`` when ``start`` is not inside the file (the caller answers 416).
    """
    if len(chunk_sizes) != len(terms):
        raise XetFormatError(f"{len(chunk_sizes)} chunk size lists for {len(terms)} terms")
    size = sum(term.size for term in terms)
    if not 0 <= start < size or end < start:
        raise ValueError(f"range {start}-{end} is not satisfiable for a file of {size} bytes")
    end = min(end, size - 1)
    kept: list[RangeTerm] = []
    offset = 0
    pos = 0
    for i, (term, sizes) in enumerate(zip(terms, chunk_sizes, strict=True)):
        if len(sizes) != term.chunk_end - term.chunk_start or sum(sizes) != term.size:
            raise XetFormatError(f"term {i}: chunk sizes do not add up to the term")
        if pos + term.size <= start:
            pos += term.size
            continue
        first = last = -1
        kept_size = 0
        for j, chunk in enumerate(sizes):
            if pos <= end and pos + chunk > start:
                if first < 0:
                    first = j
                    if not kept:
                        offset = start - pos
                last = j
                kept_size += chunk
            pos += chunk
        if first >= 0:
            chunk_start = term.chunk_start + first
            kept.append(RangeTerm(i, term.xorb_hash, chunk_start, term.chunk_start + last + 1, kept_size))
        if pos > end:
            break
    return RangePlan(tuple(kept), offset, start, end)


def merge_chunk_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Chunk ranges ``[start, end)`` sorted, with overlapping and adjacent ones merged (v2 fetch ranges)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
