"""Range planning: chunk-granular trimming and the first-range offset, checked against a byte model of the file."""

from __future__ import annotations

import random

import pytest

from openckpt.errors import XetFormatError
from openckpt.xet.reconstruction import merge_chunk_ranges, plan_range
from openckpt.xet.shard import FileTerm

A, B = b"\xaa" * 32, b"\xbb" * 32
# A file of three terms: chunks 2..5 of xorb A, 0..2 of xorb B, 5..6 of xorb A.
SIZES = [[100, 200, 300], [50, 50], [1000]]
TERMS = [FileTerm(A, 2, 5, 600), FileTerm(B, 0, 2, 100), FileTerm(A, 5, 6, 1000)]
SIZE = 1700


def chunk_spans() -> list[tuple[int, int, int, int]]:
    """``(term, absolute chunk index, first byte, end byte)`` of every chunk of the file."""
    spans, pos = [], 0
    for i, (term, sizes) in enumerate(zip(TERMS, SIZES, strict=True)):
        for j, size in enumerate(sizes):
            spans.append((i, term.chunk_start + j, pos, pos + size))
            pos += size
    return spans


def test_whole_file() -> None:
    plan = plan_range(TERMS, SIZES, 0, SIZE - 1)
    assert plan.offset_into_first_range == 0 and (plan.start, plan.end) == (0, SIZE - 1)
    assert [(t.term, t.xorb_hash, t.chunk_start, t.chunk_end, t.size) for t in plan.terms] == [
        (0, A, 2, 5, 600),
        (1, B, 0, 2, 100),
        (2, A, 5, 6, 1000),
    ]


def test_end_is_clamped_and_start_past_the_end_is_unsatisfiable() -> None:
    assert plan_range(TERMS, SIZES, 0, 10**9).end == SIZE - 1
    for start, end in [(SIZE, SIZE + 5), (10**9, 10**9), (5, 4), (-1, 3)]:
        with pytest.raises(ValueError, match="not satisfiable"):
            plan_range(TERMS, SIZES, start, end)


def test_every_range_keeps_exactly_the_overlapping_chunks() -> None:
    spans = chunk_spans()
    rng = random.Random(0)
    cases = [(s, e) for s in (0, 99, 100, 101, 599, 600, 650, 699, 700, 1699) for e in (s, s + 1, s + 150, 1699)]
    for _ in range(200):
        a, b = sorted(rng.sample(range(SIZE), 2))
        cases.append((a, b))
    for start, end in cases:
        plan = plan_range(TERMS, SIZES, start, end)
        expected = [(t, c) for t, c, a, b in spans if a <= end and b > start]
        got = [(t.term, c) for t in plan.terms for c in range(t.chunk_start, t.chunk_end)]
        assert got == expected, (start, end)
        first = next(a for t, c, a, b in spans if (t, c) == expected[0])
        assert plan.offset_into_first_range == start - first
        sizes = {(t, c): b - a for t, c, a, b in spans}
        assert [t.size for t in plan.terms] == [
            sum(sizes[(t.term, c)] for c in range(t.chunk_start, t.chunk_end)) for t in plan.terms
        ]


def test_chunk_sizes_must_fit_the_terms() -> None:
    with pytest.raises(XetFormatError):
        plan_range(TERMS, SIZES[:2], 0, 10)
    with pytest.raises(XetFormatError):
        plan_range(TERMS, [[100, 200, 301], [50, 50], [1000]], 0, 10)


def test_merge_chunk_ranges_sorts_and_merges_overlaps_and_neighbours() -> None:
    assert merge_chunk_ranges([(58, 106), (0, 9), (5, 12), (12, 20), (30, 31)]) == [(0, 20), (30, 31), (58, 106)]
    assert merge_chunk_ranges([]) == []
