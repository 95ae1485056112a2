"""Xorbs: the bytes hf_xet uploaded, round trips through every compression scheme, and every kind of bad input."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import lz4.frame
import pytest

from openckpt.errors import XetFormatError
from openckpt.xet.chunking import MAX_CHUNK, chunks
from openckpt.xet.hashes import chunk_hash, hash_to_hex, hex_to_hash, xorb_hash
from openckpt.xet.xorb import (
    BG4_LZ4,
    LZ4,
    NONE,
    build_xorb,
    decode_chunk,
    decode_chunks,
    parse_xorb,
    xorb_footer,
)


def header(clen: int, scheme: int, ulen: int, version: int = 0) -> bytes:
    return struct.pack("<BHBBHB", version, clen & 0xFFFF, clen >> 16, scheme, ulen & 0xFFFF, ulen >> 16)


def sample_chunks(seed: int = 0) -> list[bytes]:
    """Chunks of text (compresses), float-like words (BG4 helps), random bytes (incompressible), odd lengths."""
    rng = random.Random(seed)
    text = b"".join(b"tensor.%d.weight %f\n" % (i, rng.random()) for i in range(4000))
    floats = b"".join(struct.pack("<f", rng.gauss(0, 1)) for _ in range(30_000))
    return [text[:70_001], floats[:65_538], rng.randbytes(40_000), b"x", text[:3], floats[:MAX_CHUNK]]


def test_hf_xet_hello_world_xorb(data: Path) -> None:
    raw = (data / "hf_xet_uploaded_xorb_hello_world.xorb").read_bytes()
    xorb = parse_xorb(raw, expected_hash=chunk_hash(b"hello world"))
    assert xorb.hex == "4e39378b9d359f118190557a1f44130219a54e5fcfa07bd96cf50b466fe651b1"
    (chunk,) = xorb.chunks
    assert (chunk.start, chunk.end, chunk.size, chunk.scheme) == (0, 19, 11, NONE)
    assert xorb.serialized_size == 19 and xorb.footer_size == 0 and xorb.unpacked_size == 11
    assert decode_chunk(raw, chunk) == b"hello world"


def test_hf_xet_90k_xorb(data: Path) -> None:
    raw = (data / "hf_xet_uploaded_xorb_1chunk_90k.xorb").read_bytes()
    xorb = parse_xorb(raw)
    (chunk,) = xorb.chunks
    assert chunk.end == len(raw) and chunk.size == 90_684
    content = decode_chunk(raw, chunk)
    assert xorb.hash == chunk_hash(content) == xorb_hash([(chunk_hash(content), len(content))])
    assert parse_xorb(build_xorb([content], scheme=NONE), expected_hash=xorb.hash).serialized_size == len(raw)


@pytest.mark.parametrize("scheme", [NONE, LZ4, BG4_LZ4])
def test_build_then_parse_round_trips(scheme: int) -> None:
    parts = sample_chunks()
    raw = build_xorb(parts, scheme=scheme)
    expected = xorb_hash([(chunk_hash(p), len(p)) for p in parts])
    xorb = parse_xorb(raw, expected_hash=expected)
    assert [c.size for c in xorb.chunks] == [len(p) for p in parts]
    assert [decode_chunk(raw, c) for c in xorb.chunks] == parts
    assert decode_chunks(raw) == parts
    assert xorb.chunks[0].start == 0 and xorb.chunks[-1].end == len(raw) == xorb.serialized_size
    assert all(a.end == b.start for a, b in zip(xorb.chunks, xorb.chunks[1:], strict=False))
    used = {c.scheme for c in xorb.chunks}
    assert used == ({NONE} if scheme == NONE else {NONE, scheme})  # random bytes are stored uncompressed
    assert xorb.unpacked_size == sum(map(len, parts))
    assert [xorb.unpacked_offset(i) for i in range(len(parts) + 1)] == [
        sum(map(len, parts[:i])) for i in range(len(parts) + 1)
    ]


def test_schemes_can_mix_and_lz4_is_the_frame_format() -> None:
    parts = sample_chunks(1)
    mixed = b"".join(
        build_xorb([p], scheme=s) for p, s in zip(parts, [LZ4, BG4_LZ4, NONE, LZ4, BG4_LZ4, LZ4], strict=False)
    )
    xorb = parse_xorb(mixed)
    assert [decode_chunk(mixed, c) for c in xorb.chunks] == parts
    lz4_chunk = xorb.chunks[0]
    assert lz4_chunk.scheme == LZ4
    assert mixed[lz4_chunk.start + 8 : lz4_chunk.start + 12] == b"\x04\x22\x4d\x18"


def test_byte_grouping_regroups_lengths_that_are_not_multiples_of_4() -> None:
    for n in range(1, 12):
        content = bytes(range(n)) * 40 + bytes(range(n % 4))
        raw = build_xorb([content], scheme=BG4_LZ4)
        assert decode_chunks(raw) == [content]
    for content in [bytes(range(256)) * 16, bytes(range(256)) * 16 + b"xyz"]:  # grouped by hand, as the spec says
        grouped = content[0::4] + content[1::4] + content[2::4] + content[3::4]
        frame = lz4.frame.compress(grouped)
        assert decode_chunks(header(len(frame), BG4_LZ4, len(content)) + frame) == [content]


def test_chunks_of_the_chunker_fit_a_xorb() -> None:
    content = random.Random(3).randbytes(600_000)
    parts = [bytes(c) for c in chunks(content)]
    xorb = parse_xorb(build_xorb(parts))
    assert b"".join(decode_chunk(build_xorb(parts), c) for c in xorb.chunks) == content


def test_byte_range_and_offsets() -> None:
    parts = sample_chunks()
    xorb = parse_xorb(build_xorb(parts))
    assert xorb.byte_range(0, len(parts)) == (0, xorb.serialized_size)
    assert xorb.byte_range(1, 3) == (xorb.chunks[1].start, xorb.chunks[2].end)
    for bad in [(0, 0), (2, 1), (0, len(parts) + 1), (-1, 1)]:
        with pytest.raises(IndexError):
            xorb.byte_range(*bad)
    with pytest.raises(IndexError):
        xorb.unpacked_offset(len(parts) + 1)


def test_a_footer_is_accepted_and_checked() -> None:
    parts = sample_chunks()
    plain = build_xorb(parts)
    with_footer = build_xorb(parts, footer=True)
    xorb = parse_xorb(plain)
    assert with_footer.startswith(plain)
    assert len(with_footer) - len(plain) == 96 + 40 * len(parts)
    framed = parse_xorb(with_footer, expected_hash=xorb.hash)
    assert framed.chunks == xorb.chunks and framed.footer_size == len(with_footer) - len(plain)
    nonce = plain + xorb_footer(xorb, nonce=b"\x01\x02\x03\x04")
    assert parse_xorb(nonce).hash == xorb.hash  # the nonce is not part of the identity
    other = parse_xorb(build_xorb(parts[:2]))
    for lie in [plain + xorb_footer(other), with_footer[:-1], with_footer + b"\0", plain + b"XETBLOB"]:
        with pytest.raises(XetFormatError):
            parse_xorb(lie)
    corrupt = bytearray(with_footer)
    corrupt[len(plain) + 50] ^= 1  # inside the footer's chunk hashes
    with pytest.raises(XetFormatError, match="footer"):
        parse_xorb(bytes(corrupt))


def test_a_lying_hash_is_rejected() -> None:
    raw = build_xorb(sample_chunks())
    with pytest.raises(XetFormatError, match="hashes to"):
        parse_xorb(raw, expected_hash=chunk_hash(b"something else"))


def test_a_flipped_byte_is_rejected_everywhere() -> None:
    parts = sample_chunks()
    raw = build_xorb(parts, scheme=LZ4)
    expected = parse_xorb(raw).hash
    rng = random.Random(5)
    for pos in [0, 1, 4, 5, 8, 9, 20, *rng.sample(range(len(raw)), 60), len(raw) - 1]:
        corrupt = bytearray(raw)
        corrupt[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(XetFormatError):
            parse_xorb(bytes(corrupt), expected_hash=expected)


def test_truncation_anywhere_is_rejected() -> None:
    raw = build_xorb(sample_chunks(), scheme=LZ4)
    expected = parse_xorb(raw).hash
    for cut in [*range(0, 20), *range(20, len(raw), 997), len(raw) - 1]:
        with pytest.raises(XetFormatError):
            parse_xorb(raw[:cut], expected_hash=expected)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "no chunks"),
        (header(3, NONE, 3, version=1) + b"abc", "version"),
        (header(3, 3, 3) + b"abc", "scheme"),
        (header(3, 99, 3) + b"abc", "scheme"),
        (header(0, NONE, 0), "uncompressed size"),
        (header(1, NONE, MAX_CHUNK + 1) + b"a", "uncompressed size"),
        (header(2 * MAX_CHUNK + 1, LZ4, 10) + bytes(2 * MAX_CHUNK + 1), "compressed size"),
        (header(3, NONE, 4) + b"abc", "declares"),
        (header(5, NONE, 3) + b"abcde", "declares"),
        (header(10, LZ4, 10) + bytes(10), "LZ4"),
    ],
    ids=["empty", "version", "scheme3", "auto", "empty-chunk", "too-big", "compressed", "short", "long", "garbage"],
)
def test_malformed_headers(raw: bytes, message: str) -> None:
    with pytest.raises(XetFormatError, match=message):
        parse_xorb(raw)


def test_a_decompression_bomb_stops_at_the_declared_size() -> None:
    bomb = lz4.frame.compress(bytes(20_000_000))
    assert len(bomb) < 2 * MAX_CHUNK
    with pytest.raises(XetFormatError, match="exactly"):
        parse_xorb(header(len(bomb), LZ4, MAX_CHUNK) + bomb)
    short = lz4.frame.compress(bytes(1000))
    with pytest.raises(XetFormatError, match="exactly"):
        parse_xorb(header(len(short), LZ4, 2000) + short)


def test_bytes_after_an_lz4_frame_are_rejected() -> None:
    frame = lz4.frame.compress(b"a" * 1000) + b"junk"
    with pytest.raises(XetFormatError, match="stray"):
        parse_xorb(header(len(frame), LZ4, 1000) + frame)


def test_limits() -> None:
    raw = build_xorb([b"a" * 100] * 10, scheme=NONE)
    parse_xorb(raw, max_chunks=10, max_unpacked=1000, max_size=len(raw))
    with pytest.raises(XetFormatError, match="over the limit"):
        parse_xorb(raw, max_size=len(raw) - 1)
    with pytest.raises(XetFormatError, match="more than 9 chunks"):
        parse_xorb(raw, max_chunks=9)
    with pytest.raises(XetFormatError, match="uncompressed bytes"):
        parse_xorb(raw, max_unpacked=999)


def test_many_tiny_bombs_hit_the_total_cap_not_the_memory() -> None:
    """Chunks of a few compressed bytes that each expand to 128 KiB stop at the 64 MiB total, not at 20 GiB."""
    frame = lz4.frame.compress(bytes(MAX_CHUNK))
    one = header(len(frame), LZ4, MAX_CHUNK) + frame
    raw = one * ((64 << 20) // MAX_CHUNK + 2)
    with pytest.raises(XetFormatError, match="uncompressed bytes"):
        parse_xorb(raw)


def test_decode_chunk_checks_the_recorded_chunk() -> None:
    parts = sample_chunks()
    raw = build_xorb(parts)
    xorb = parse_xorb(raw)
    first, second = xorb.chunks[0], xorb.chunks[1]
    with pytest.raises(XetFormatError):
        decode_chunk(raw, type(first)(first.hash, first.start, second.end, first.size, first.scheme))
    with pytest.raises(XetFormatError, match="hash"):
        decode_chunk(raw, type(first)(second.hash, first.start, first.end, first.size, first.scheme))
    assert decode_chunk(raw, type(first)(second.hash, first.start, first.end, first.size, 0), verify=False) == parts[0]
    with pytest.raises(XetFormatError, match="outside"):
        decode_chunk(raw[:100], first)


def test_build_xorb_rejects_bad_chunks() -> None:
    for bad in [b"", bytes(MAX_CHUNK + 1)]:
        with pytest.raises(XetFormatError):
            build_xorb([bad])
    with pytest.raises(XetFormatError):
        build_xorb([b"a"], scheme=7)


def test_hash_string_of_a_parsed_xorb() -> None:
    xorb = parse_xorb(build_xorb([b"hello world"]))
    assert hex_to_hash(xorb.hex) == xorb.hash == chunk_hash(b"hello world")
    assert hash_to_hex(xorb.hash) == xorb.hex


def test_decode_chunk_from_a_ranged_read() -> None:
    parts = sample_chunks()
    raw = build_xorb(parts, scheme=BG4_LZ4)
    xorb = parse_xorb(raw)
    first, last = xorb.byte_range(1, 4)
    piece = raw[first:last]  # what a storage backend's ranged GET returns
    assert [decode_chunk(piece, c, offset=first) for c in xorb.chunks[1:4]] == parts[1:4]
    assert decode_chunks(piece) == parts[1:4]
    with pytest.raises(XetFormatError, match="outside"):
        decode_chunk(piece, xorb.chunks[0], offset=first)
