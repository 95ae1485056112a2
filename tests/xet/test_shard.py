"""Shards: hf_xet's real upload body, complete shards for global dedup (keyed or not), and hostile input."""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from openckpt.errors import XetFormatError
from openckpt.xet.hashes import (
    ZERO_HASH,
    chunk_hash,
    file_hash,
    hash_to_hex,
    keyed_chunk_hash,
    verification_hash,
    xorb_hash,
)
from openckpt.xet.shard import (
    CHUNK_GLOBAL_DEDUP,
    NEVER,
    FileTerm,
    Shard,
    XetFile,
    XorbInfo,
    parse_shard,
    serialize_shard,
)

XORB = "f528f4d43c51eae595adea9603e5ab548e86a725f2829ecbd2991783963e78f8"


@pytest.fixture(scope="module")
def upload(data: Path) -> bytes:
    return (data / "hf_xet_uploaded_shard_4files.bin").read_bytes()


def small_shard() -> Shard:
    contents = [b"alpha" * 1000, b"beta" * 3000, b"gamma"]
    hashes = [chunk_hash(c) for c in contents]
    xorb = XorbInfo(
        xorb_hash([(h, len(c)) for h, c in zip(hashes, contents, strict=True)]),
        ((hashes[0], 0, 5000), (hashes[1], 5000, 12000), (hashes[2], 17000, 5)),
        chunk_flags=(CHUNK_GLOBAL_DEDUP, 0, 0),
    )
    term = FileTerm(xorb.hash, 0, 2, 17000, verification_hash(hashes[:2]))
    files = (
        XetFile(file_hash([(hashes[0], 5000), (hashes[1], 12000)]), (term,), hashlib.sha256(b"x").digest()),
        XetFile(ZERO_HASH, (), bytes(32)),  # an empty file, as hf_xet uploads it
        XetFile(file_hash([(hashes[2], 5)]), (FileTerm(xorb.hash, 2, 3, 5),)),  # no verification, no sha256
    )
    return Shard(files, (xorb,))


def test_hf_xet_upload_body(upload: bytes) -> None:
    shard = parse_shard(upload)
    assert [f.size for f in shard.files] == [3_000_000, 3_000_008, 11, 300_000]
    assert [f.sha256.hex() for f in shard.files if f.sha256][2] == (
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"  # sha256(b"hello world")
    )
    (xorb,) = shard.xorbs
    assert hash_to_hex(xorb.hash) == XORB
    assert len(xorb.chunks) == 106 and xorb.unpacked_size == 6_300_019 and xorb.serialized_size == 0
    assert xorb_hash([(h, size) for h, _, size in xorb.chunks]) == xorb.hash
    for file in shard.files:
        leaves = []
        for term in file.terms:
            assert term.xorb_hash == xorb.hash
            listed = xorb.chunks[term.chunk_start : term.chunk_end]
            assert term.verification == verification_hash([h for h, _, _ in listed])
            assert term.size == sum(size for _, _, size in listed)
            leaves += [(h, size) for h, _, size in listed]
        assert file_hash(leaves) == file.hash
    hello = shard.files[2]
    assert hash_to_hex(hello.hash) == "f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f"


def test_the_upload_body_serializes_back_byte_for_byte(upload: bytes) -> None:
    assert serialize_shard(parse_shard(upload), footer=False) == upload


@pytest.mark.parametrize("make", [small_shard, lambda: Shard()], ids=["small", "empty"])
def test_round_trips(make: Callable[[], Shard], upload: bytes) -> None:
    for shard in [make(), parse_shard(upload)]:
        assert parse_shard(serialize_shard(shard, footer=False)) == shard
        complete = serialize_shard(shard, created=1_700_000_000, key_expiry=1_700_600_000)
        again = parse_shard(complete)
        assert again == shard
        assert (again.created, again.key_expiry) == (1_700_000_000, 1_700_600_000)
        assert serialize_shard(again, created=1_700_000_000, key_expiry=1_700_600_000) == complete


def test_complete_shard_layout() -> None:
    """The footer and lookup tables a client's ``MDBShardInfo`` reads (offsets, sorted truncated keys, indices)."""
    shard = small_shard()
    raw = serialize_shard(shard, created=5)
    assert struct.unpack_from("<QQ", raw, 32) == (2, 200)
    footer = struct.unpack_from("<9Q32sQQ6QQQQQ", raw, len(raw) - 200)
    version, file_info, xorb_info, file_lookup, n_files, xorb_lookup, n_xorbs, chunk_lookup, n_chunks = footer[:9]
    assert (version, file_info, n_files, n_xorbs, n_chunks) == (1, 48, 3, 1, 3)
    assert footer[9] == ZERO_HASH and footer[10] == 5 and footer[11] == NEVER
    assert footer[-1] == len(raw) - 200
    assert footer[-2] == 17000 + 5  # stored bytes: the xorb's chunks
    assert footer[-3] == 17000 + 0 + 5  # materialized bytes: the files
    files = [struct.unpack_from("<QI", raw, file_lookup + 12 * i) for i in range(n_files)]
    assert [k for k, _ in files] == sorted(k for k, _ in files)
    # records: file 0 = header + 1 term + 1 verification + 1 sha256; file 1 = header + sha256; file 2 = header + term
    by_key = {k: i for k, i in files}
    assert [by_key[int.from_bytes(f.hash[:8], "little")] for f in shard.files] == [0, 4, 6]
    assert struct.unpack_from("<QI", raw, xorb_lookup) == (int.from_bytes(shard.xorbs[0].hash[:8], "little"), 0)
    chunks = [struct.unpack_from("<QII", raw, chunk_lookup + 16 * i) for i in range(n_chunks)]
    assert [k for k, _, _ in chunks] == sorted(k for k, _, _ in chunks)
    assert sorted((x, i) for _, x, i in chunks) == [(0, 0), (0, 1), (0, 2)]
    assert chunk_lookup + 16 * n_chunks == len(raw) - 200
    assert raw[xorb_info : xorb_info + 32] == shard.xorbs[0].hash


def test_keyed_global_dedup_answer() -> None:
    shard = Shard((), small_shard().xorbs)
    key = random.Random(1).randbytes(32)
    raw = serialize_shard(shard, hmac_key=key, key_expiry=2_000_000_000)
    keyed = parse_shard(raw)
    assert keyed.hmac_key == key and keyed.key_expiry == 2_000_000_000
    raw_hashes = [h for h, _, _ in shard.xorbs[0].chunks]
    assert [h for h, _, _ in keyed.xorbs[0].chunks] == [keyed_chunk_hash(h, key) for h in raw_hashes]
    assert keyed.xorbs[0].hash == shard.xorbs[0].hash  # only chunk hashes are keyed
    footer = struct.unpack_from("<9Q", raw, len(raw) - 200)
    keys = {struct.unpack_from("<Q", raw, footer[7] + 16 * i)[0] for i in range(footer[8])}
    assert keys == {int.from_bytes(keyed_chunk_hash(h, key)[:8], "little") for h in raw_hashes}
    with pytest.raises(XetFormatError, match="keyed already"):
        serialize_shard(keyed, hmac_key=key)
    with pytest.raises(XetFormatError, match="footer"):
        serialize_shard(shard, hmac_key=key, footer=False)
    assert serialize_shard(shard, hmac_key=ZERO_HASH) == serialize_shard(shard)


def test_truncation_anywhere_is_rejected(upload: bytes) -> None:
    complete = serialize_shard(parse_shard(upload))
    for raw in [upload, complete]:
        for cut in range(0, len(raw), 7):
            with pytest.raises(XetFormatError):
                parse_shard(raw[:cut])


def test_random_corruption_never_escapes_as_another_error(upload: bytes) -> None:
    rng = random.Random(11)
    complete = serialize_shard(parse_shard(upload))
    for raw in [upload, complete]:
        for _ in range(300):
            corrupt = bytearray(raw)
            for _ in range(rng.randrange(1, 4)):
                corrupt[rng.randrange(len(corrupt))] ^= 1 << rng.randrange(8)
            with contextlib.suppress(XetFormatError):
                parse_shard(bytes(corrupt))


def patched(raw: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(raw)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0, "<B", 0x47, "header tag"),
        (32, "<Q", 3, "version"),
        (40, "<Q", 1 << 40, "footer of"),
        (48 + 36, "<I", 0xFFFFFFFF, "room for fewer"),  # num_entries of the first file
        (48 + 32, "<I", 0x20000000 | 0xC0000000, "unknown flags"),
        (48 + 48 + 40, "<I", 48, "impossible"),  # a term whose chunk range is empty
        (48 + 17 * 48 + 36, "<I", 0xFFFFFFFF, "room for fewer"),  # num_entries of the xorb
        (48 + 17 * 48 + 40, "<I", 1, "declares"),  # num_bytes_in_xorb
        (48 + 19 * 48 + 32, "<I", 51879, "does not follow on"),  # a chunk's uncompressed start
        (48 + 19 * 48 + 36, "<I", 0, "does not follow on"),  # a chunk of zero bytes
    ],
    ids=["tag", "version", "footer-size", "file-count", "flags", "term", "xorb-count", "xorb-bytes", "offset", "zero"],
)
def test_malformed_fields(upload: bytes, offset: int, fmt: str, value: int, message: str) -> None:
    with pytest.raises(XetFormatError, match=message):
        parse_shard(patched(upload, offset, fmt, value))


def test_absurd_counts_fail_fast_without_allocating() -> None:
    head = serialize_shard(Shard(), footer=False)[:48]
    file_header = struct.pack("<32sIIQ", b"\x01" * 32, 0, 0xFFFFFFFF, 0)
    with pytest.raises(XetFormatError, match="room for fewer"):
        parse_shard(head + file_header + bytes(48 * 3))
    xorb_header = struct.pack("<32sIIII", b"\x02" * 32, 0, 0xFFFFFFFF, 0, 0)
    with pytest.raises(XetFormatError, match="room for fewer"):
        parse_shard(head + b"\xff" * 32 + bytes(16) + xorb_header)


def test_structure_errors(upload: bytes) -> None:
    with pytest.raises(XetFormatError, match="stray"):
        parse_shard(upload + bytes(48))
    with pytest.raises(XetFormatError, match="over the limit"):
        parse_shard(upload, max_size=len(upload) - 1)
    with pytest.raises(XetFormatError, match="shorter than its header"):
        parse_shard(upload[:47])
    nothing_after_bookend = serialize_shard(Shard(), footer=False)
    with pytest.raises(XetFormatError, match="truncated"):
        parse_shard(nothing_after_bookend[:-48])
    empty_xorb = serialize_shard(Shard(), footer=False)[:-48] + struct.pack("<32sIIII", b"\x03" * 32, 0, 0, 0, 0)
    with pytest.raises(XetFormatError, match="no chunks"):
        parse_shard(empty_xorb + b"\xff" * 32 + bytes(16))
    not_empty = XetFile(chunk_hash(b"x"), ())
    with pytest.raises(XetFormatError, match="empty file"):
        parse_shard(serialize_shard(Shard((not_empty,)), footer=False))


def test_inconsistent_footers_are_rejected(upload: bytes) -> None:
    complete = serialize_shard(parse_shard(upload))
    footer = len(complete) - 200
    for field in range(9):
        with pytest.raises(XetFormatError, match="footer"):
            parse_shard(patched(complete, footer + 8 * field, "<Q", 12345))
    with pytest.raises(XetFormatError, match="footer"):
        parse_shard(patched(complete, footer + 192, "<Q", 0))
    with pytest.raises(XetFormatError):
        parse_shard(patched(complete, 40, "<Q", 0))  # says footer-less, but has tables and a footer


def test_serialize_rejects_mixed_verification_and_bad_hashes() -> None:
    h = chunk_hash(b"a")
    mixed = XetFile(h, (FileTerm(h, 0, 1, 1, h), FileTerm(h, 1, 2, 1)))
    with pytest.raises(XetFormatError, match="some terms"):
        serialize_shard(Shard((mixed,)))
    with pytest.raises(XetFormatError, match="32 bytes"):
        serialize_shard(Shard((XetFile(b"short", ()),)))
    with pytest.raises(XetFormatError, match="chunk_flags"):
        serialize_shard(Shard((), (XorbInfo(h, ((h, 0, 1),), chunk_flags=(0, 0)),)))
