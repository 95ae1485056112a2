"""Shard-upload checks against stored xorbs: the real hf_xet shard passes, every kind of lie fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from openckpt.errors import XetFormatError
from openckpt.xet.hashes import chunk_hash
from openckpt.xet.shard import FileTerm, Shard, XetFile, XorbInfo, parse_shard
from openckpt.xet.verify import ChunkList, check_file, check_xorb_info
from openckpt.xet.xorb import build_xorb, parse_xorb


@pytest.fixture(scope="module")
def shard(data: Path) -> Shard:
    return parse_shard((data / "hf_xet_uploaded_shard_4files.bin").read_bytes())


def stored(shard: Shard) -> dict[bytes, ChunkList]:
    """The server's chunk lists, as it would hold them after parsing the uploaded xorbs."""
    return {x.hash: [(h, size) for h, _, size in x.chunks] for x in shard.xorbs}


def test_the_hf_xet_shard_checks_out(shard: Shard) -> None:
    chunks = stored(shard)
    for file in shard.files:
        check_file(file, chunks.get)


def test_lies_are_caught(shard: Shard) -> None:
    chunks = stored(shard)
    file = shard.files[0]
    (term,) = file.terms
    other = shard.files[1].terms[0]
    lies = {
        "not stored": replace(term, xorb_hash=chunk_hash(b"nope")),
        "not in a xorb": replace(term, chunk_end=10_000),
        "different amount": replace(term, size=term.size + 1),
        "verification hash": replace(term, verification=other.verification),
        "no verification": replace(term, verification=None),
    }
    for message, lie in lies.items():
        with pytest.raises(XetFormatError, match=message):
            check_file(XetFile(file.hash, (lie,), file.sha256), chunks.get)
    with pytest.raises(XetFormatError, match="hash to"):
        check_file(XetFile(shard.files[1].hash, file.terms, file.sha256), chunks.get)
    unverified = XetFile(file.hash, (replace(term, verification=None),))
    check_file(unverified, chunks.get, require_verification=False)


def test_xorb_info_must_match_the_stored_xorb() -> None:
    parts = [b"a" * 5000, b"b" * 7000]
    xorb = parse_xorb(build_xorb(parts))
    info = XorbInfo(xorb.hash, tuple((c.hash, xorb.unpacked_offset(i), c.size) for i, c in enumerate(xorb.chunks)))
    check_xorb_info(info, xorb)
    with pytest.raises(XetFormatError, match="differ"):
        check_xorb_info(replace(info, chunks=info.chunks[:1]), xorb)
    with pytest.raises(XetFormatError, match="compared with"):
        check_xorb_info(replace(info, hash=chunk_hash(b"x")), xorb)
    nothing: dict[bytes, ChunkList] = {}
    check_file(XetFile(bytes(32), ()), nothing.get)  # the empty file
    with pytest.raises(XetFormatError):
        check_file(XetFile(bytes(32), (FileTerm(xorb.hash, 0, 1, 5000),)), nothing.get)
