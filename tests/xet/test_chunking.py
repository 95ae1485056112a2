"""The vectorised chunker against the reference byte loop, the spec's vectors and hf_xet's own file hashes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from openckpt.xet.chunking import GEAR_TABLE, MASK, MAX_CHUNK, MIN_CHUNK, chunk_boundaries, chunks
from openckpt.xet.hashes import chunk_hash, file_hash, hash_to_hex

U64 = (1 << 64) - 1


def reference_boundaries(data: bytes) -> list[int]:
    """The spec's §2.2 byte loop, verbatim."""
    h, start, out = 0, 0, []
    for i, b in enumerate(data):
        h = ((h << 1) + GEAR_TABLE[b]) & U64
        size = i + 1 - start
        if size < MIN_CHUNK:
            continue
        if size >= MAX_CHUNK or (h & MASK) == 0:
            out.append(i + 1)
            start, h = i + 1, 0
    if start < len(data):
        out.append(len(data))
    return out


def xet_file_hash(data: bytes) -> str:
    return hash_to_hex(file_hash([(chunk_hash(c), len(c)) for c in chunks(data)]))


def mixed(seed: int, size: int) -> bytes:
    """Random blocks, runs of zeros and repeats, so that hash cuts, forced cuts and short tails all occur."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        kind = rng.random()
        n = rng.randrange(1, 200_000)
        if kind < 0.5:
            out += rng.randbytes(n)
        elif kind < 0.7:
            out += bytes(n)
        elif out:
            start = rng.randrange(len(out))
            out += out[start : start + n]
    return bytes(out[:size])


def test_gear_table_is_the_gearhash_default_table(data: Path) -> None:
    words = (data / "gear_table.txt").read_text().split()
    assert tuple(int(w, 16) for w in words) == GEAR_TABLE
    assert len(GEAR_TABLE) == 256
    assert GEAR_TABLE[:3] == (0xB088D3A9E840F559, 0x5652C7F739ED20D6, 0x45B28969898972AB)
    assert GEAR_TABLE[-1] == 0x63C7A906C1DD187B


@pytest.mark.parametrize(
    ("data", "count", "expected"),
    [
        (b"", 0, "0" * 64),
        (b"a", 1, "49a7fffaf5f34109d4a191757f3e541e26437dcd1e0e83153454a503757856be"),
        (b"hello world", 1, "f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f"),
        (bytes(1_000_000), 8, "c0c85185f4307d40facfd366573176e54fc9c76041e44e32d52489780a6d1eaa"),
    ],
    ids=["empty", "a", "hello", "zeros"],
)
def test_spec_vectors(data: bytes, count: int, expected: str) -> None:
    assert len(chunk_boundaries(data)) == count
    assert xet_file_hash(data) == expected


def test_a_million_zeros_cut_at_every_max_chunk() -> None:
    assert chunk_boundaries(bytes(1_000_000)) == [*range(MAX_CHUNK, 1_000_000, MAX_CHUNK), 1_000_000]


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_reference_loop(seed: int) -> None:
    data = mixed(seed, 700_000)
    expected = reference_boundaries(data)
    assert chunk_boundaries(data) == expected
    assert chunk_boundaries(memoryview(data)) == expected
    sizes = [b - a for a, b in zip([0, *expected], expected, strict=False)]
    assert all(size <= MAX_CHUNK for size in sizes) and all(size >= MIN_CHUNK for size in sizes[:-1])


@pytest.mark.parametrize("size", [1, MIN_CHUNK - 1, MIN_CHUNK, MIN_CHUNK + 1, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1])
def test_sizes_around_the_limits(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert chunk_boundaries(data) == reference_boundaries(data)


def test_chunks_are_zero_copy_views_that_cover_the_data() -> None:
    data = mixed(9, 400_000)
    parts = chunks(data)
    assert all(isinstance(p, memoryview) for p in parts)
    assert b"".join(parts) == data


def test_file_hash_matches_hf_xet_hash_files(tmp_path: Path) -> None:
    """Chunk with our chunker, hash with our Merkle tree: hf_xet 1.8.0 must report the same Xet hash."""
    hf_xet = pytest.importorskip("hf_xet")
    rng = random.Random(42)
    contents = {
        "empty": b"",
        "one": b"a",
        "min": rng.randbytes(MIN_CHUNK),
        "max_plus_one": rng.randbytes(MAX_CHUNK + 1),
        "zeros": bytes(1_000_000),
        "mixed": mixed(7, 3_000_000),
        "text": b"".join(b"line %d of a text file\n" % i for i in range(60_000)),
    }
    paths = []
    for name, content in contents.items():
        path = tmp_path / name
        path.write_bytes(content)
        paths.append(str(path))
    answers = hf_xet.hash_files(paths)
    for (name, content), answer in zip(contents.items(), answers, strict=True):
        assert answer.file_size == len(content), name
        assert xet_file_hash(content) == answer.hash, name
