"""XorbUnpacker: a xorb checked as its bytes arrive, in pieces of any size, gives exactly what unpack_xorb gives for
the whole body, refuses what it refuses, and hashes every byte of the result in the same pass."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from openckpt.errors import XetFormatError
from openckpt.xet.chunking import MAX_CHUNK
from openckpt.xet.unpacker import SEGMENT_BUFFER, XorbUnpacker
from openckpt.xet.xorb import BG4_LZ4, LZ4, NONE, build_xorb, new_buffer, parse_xorb, unpack_xorb
from tests.xet.test_unpack_xorb import sample_chunks


def pieces(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut at random places: single bytes, a header's width, a chunk's, more."""
    rng, out, pos = random.Random(seed), [], 0
    while pos < len(data):
        n = rng.choice([1, 3, 8, 9, 1000, 65536, 300_000])
        out.append(data[pos : pos + n])
        pos += n
    return out


def streamed(
    data: bytes, seed: int = 0, expected_hash: bytes | None = None, **limits: int
) -> tuple[object, bytes, str]:
    """What an unpacker fed ``data`` in random pieces writes out: its description, its bytes, their sha256."""
    digest, out, pending = hashlib.sha256(), bytearray(), []

    def write(part: memoryview) -> None:
        assert not pending  # written() was called since the last write
        pending.append(bytes(part))

    def written() -> None:
        out.extend(b"".join(pending))
        pending.clear()

    unpacker = XorbUnpacker(
        [new_buffer(SEGMENT_BUFFER), new_buffer(SEGMENT_BUFFER)],
        write=write,
        written=written,
        expected_hash=expected_hash,
        hasher=digest,
        **limits,
    )
    unpacker.feed_all(pieces(data, seed))
    xorb = unpacker.finish()
    assert not pending
    return xorb, bytes(out), digest.hexdigest()


@pytest.mark.parametrize("scheme", [NONE, LZ4, BG4_LZ4])
@pytest.mark.parametrize("footer", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_is_unpack_xorb(scheme: int, footer: bool, seed: int) -> None:
    sent = build_xorb(sample_chunks(seed) * 30, scheme=scheme, footer=footer)  # over one segment
    whole, body = unpack_xorb(sent, expected_hash=parse_xorb(sent).hash)
    xorb, got, sha256 = streamed(sent, seed)
    assert xorb == whole and got == bytes(body)
    assert sha256 == hashlib.sha256(body).hexdigest()


def test_hf_xet_uploads_stream_to_their_unpacked_form(data: Path) -> None:
    for sample in sorted(data.glob("*.xorb")):
        sent = sample.read_bytes()
        whole, body = unpack_xorb(sent)
        for seed in range(2):
            xorb, got, _ = streamed(sent, seed)
            assert xorb == whole and got == bytes(body)


def test_refuses_what_unpack_xorb_refuses() -> None:
    sent = build_xorb(sample_chunks(), scheme=LZ4)
    with pytest.raises(XetFormatError, match="hashes to"):
        streamed(sent, expected_hash=bytes(32))
    broken = bytearray(sent)
    broken[30] ^= 0xFF  # inside the first LZ4 frame: other bytes, or no frame at all
    with pytest.raises(XetFormatError):
        streamed(bytes(broken), expected_hash=parse_xorb(sent).hash)
    for cut in (3, 20, len(sent) - 1):  # in a header, in a payload, at the very end
        with pytest.raises(XetFormatError, match="truncated"):
            streamed(sent[:cut])
    with pytest.raises(XetFormatError, match="no chunks"):
        streamed(b"")
    with pytest.raises(XetFormatError, match="more than 2 chunks"):
        streamed(build_xorb(sample_chunks(), scheme=NONE), max_chunks=2)
    with pytest.raises(XetFormatError, match="uncompressed bytes"):
        streamed(build_xorb([bytes(MAX_CHUNK)] * 3, scheme=LZ4), max_unpacked=2 * MAX_CHUNK)
    with pytest.raises(XetFormatError, match="over the limit"):
        streamed(sent, max_size=len(sent) - 1)
    footed = bytearray(build_xorb(sample_chunks(), scheme=LZ4, footer=True))
    footed[parse_xorb(footed).chunks[-1].end + 12] ^= 0xFF  # the xorb hash the footer names
    with pytest.raises(XetFormatError, match="footer"):
        streamed(bytes(footed))


def test_whole_pages_go_out_from_two_buffers_in_turn() -> None:
    """A xorb larger than a segment goes out in whole pages, but for its last piece; nothing is lost between."""
    rng = random.Random(5)
    chunks = [rng.randbytes(rng.randint(1, MAX_CHUNK)) for _ in range(200)]  # about 13 MB: several segments
    sent = build_xorb(chunks, scheme=LZ4)
    sizes: list[int] = []
    out = bytearray()

    def write(part: memoryview) -> None:
        sizes.append(len(part))
        out.extend(part)

    buffers = [new_buffer(SEGMENT_BUFFER), new_buffer(SEGMENT_BUFFER)]
    unpacker = XorbUnpacker(buffers, write=write)
    unpacker.feed(sent)
    xorb = unpacker.finish()
    assert len(sizes) >= 3 and all(n % 4096 == 0 for n in sizes[:-1])
    assert bytes(out) == bytes(unpack_xorb(sent)[1]) and xorb.serialized_size == len(out)
    with pytest.raises(ValueError, match="two buffers"):
        XorbUnpacker(buffers[:1], write=write)
