"""unpack_xorb: the server's one-pass check of an upload keeps the chunks it decompressed, stored uncompressed."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from openckpt.errors import XetFormatError
from openckpt.xet.chunking import MAX_CHUNK
from openckpt.xet.xorb import BG4_LZ4, LZ4, NONE, build_xorb, decode_chunks, parse_xorb, unpack_xorb


def sample_chunks(seed: int = 0) -> list[bytes]:
    """Text (compresses), float words (BG4 helps), random bytes (stored as is), lengths that are not multiples of 4."""
    rng = random.Random(seed)
    text = b"".join(b"tensor.%d.weight %f\n" % (i, rng.random()) for i in range(4000))
    floats = b"".join(struct.pack("<e", rng.gauss(0, 0.02)) for _ in range(70_000))
    return [text[:70_001], floats[:65_538], rng.randbytes(40_000), b"x", text[:3], floats[:MAX_CHUNK], floats[1:7]]


@pytest.mark.parametrize("scheme", [NONE, LZ4, BG4_LZ4])
@pytest.mark.parametrize("footer", [False, True])
def test_unpacked_xorb_has_the_same_hash_and_chunks_stored_uncompressed(scheme: int, footer: bool) -> None:
    chunks = sample_chunks()
    sent = build_xorb(chunks, scheme=scheme, footer=footer)
    parsed = parse_xorb(sent)
    xorb, body = unpack_xorb(sent, expected_hash=parsed.hash)
    assert xorb.hash == parsed.hash
    assert [(c.hash, c.size) for c in xorb.chunks] == [(c.hash, c.size) for c in parsed.chunks]
    assert all(c.scheme == NONE for c in xorb.chunks)
    assert xorb.serialized_size == len(body) == sum(8 + len(c) for c in chunks)
    assert parse_xorb(body) == xorb  # the stored layout is what the description says
    assert decode_chunks(body) == chunks


def test_a_xorb_stored_as_sent_is_not_copied() -> None:
    plain = build_xorb(sample_chunks(1), scheme=NONE)
    _, same = unpack_xorb(plain)
    assert same.obj is plain


def test_hf_xet_upload_unpacks_to_its_own_chunks(data: Path) -> None:
    for sample in sorted(data.glob("*.xorb")):
        sent = sample.read_bytes()
        parsed = parse_xorb(sent)
        xorb, body = unpack_xorb(sent, expected_hash=parsed.hash)
        assert xorb.hash == parsed.hash
        assert b"".join(decode_chunks(body)) == b"".join(decode_chunks(sent[: parsed.chunks[-1].end]))


def test_refuses_what_parse_xorb_refuses() -> None:
    sent = bytearray(build_xorb(sample_chunks(), scheme=LZ4))
    name = parse_xorb(sent).hash
    with pytest.raises(XetFormatError, match="hashes to"):
        unpack_xorb(sent, expected_hash=bytes(32))
    sent[30] ^= 0xFF  # inside the first LZ4 frame: other bytes, or no frame at all
    with pytest.raises(XetFormatError):
        unpack_xorb(sent, expected_hash=name)
    with pytest.raises(XetFormatError, match="no chunks"):
        unpack_xorb(b"")
    with pytest.raises(XetFormatError, match="more than 2 chunks"):
        unpack_xorb(build_xorb(sample_chunks(), scheme=NONE), max_chunks=2)
    bomb = build_xorb([bytes(MAX_CHUNK)] * 3, scheme=LZ4)
    with pytest.raises(XetFormatError, match="uncompressed bytes"):
        unpack_xorb(bomb, max_unpacked=2 * MAX_CHUNK)
    footed = bytearray(build_xorb(sample_chunks(), scheme=LZ4, footer=True))
    footed[parse_xorb(footed).chunks[-1].end + 12] ^= 0xFF  # the xorb hash the footer names
    with pytest.raises(XetFormatError, match="footer"):
        unpack_xorb(footed)
