"""Xet hashes: keyed blake3 chunk hashes, the Merkle tree over chunks, file, verification and HMAC hashes.

A hash is 32 raw bytes, exactly as blake3 produced them and as every binary Xet format stores them. Its string form
(URLs, JSON, ``X-Xet-Hash``) reads each 8-byte word as a little-endian u64 and prints it as ``%016x``: it is *not*
``bytes.hex()`` (protocol spec §1.2).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence

import blake3

from openckpt.errors import XetFormatError

__all__ = [
    "DATA_KEY",
    "HASH_SIZE",
    "INTERNAL_NODE_KEY",
    "VERIFICATION_KEY",
    "ZERO_HASH",
    "chunk_hash",
    "eligible_for_global_dedup",
    "file_hash",
    "hash_to_hex",
    "hex_to_hash",
    "hex_to_sha256",
    "is_hash_hex",
    "keyed_chunk_hash",
    "merkle_root",
    "sha256_to_hex",
    "verification_hash",
    "xorb_hash",
]

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
DATA_KEY = bytes(
    [
        102,
        151,
        245,
        119,
        91,
        149,
        80,
        222,
        49,
        53,
        203,
        172,
        165,
        151,
        24,
        28,
        157,
        228,
        33,
        16,
        155,
        235,
        43,
        88,
        180,
        208,
        176,
        75,
        147,
        173,
        242,
        41,
    ]
)
INTERNAL_NODE_KEY = bytes(
    [
        1,
        126,
        197,
        199,
        165,
        71,
        41,
        150,
        253,
        148,
        102,
        102,
        180,
        138,
        2,
        230,
        93,
        221,
        83,
        111,
        55,
        199,
        109,
        210,
        248,
        99,
        82,
        230,
        74,
        83,
        113,
        63,
    ]
)
VERIFICATION_KEY = bytes(
    [
        127,
        24,
        87,
        214,
        206,
        86,
        237,
        102,
        18,
        127,
        249,
        19,
        231,
        165,
        195,
        243,
        164,
        205,
        38,
        213,
        181,
        219,
        73,
        230,
        65,
        36,
        152,
        127,
        40,
        251,
        148,
        195,
    ]
)

MERKLE_MEAN_BRANCHING = 4
"""A Merkle group closes after a node whose hash is 0 mod this (never at its first two nodes)."""
MERKLE_MAX_GROUP = 2 * MERKLE_MEAN_BRANCHING + 1
GLOBAL_DEDUP_MODULUS = 1024
"""Chunks whose hash is 0 mod this are the ones clients ask the CAS about for global dedup (§3.7)."""
_HEX = re.compile(r"[0-9a-f]{64}")
_THREADED_FROM = 4 << 20


_WORDS_LE, _WORDS_BE = struct.Struct("<4Q"), struct.Struct(">4Q")


def _word_swap(raw: bytes) -> bytes:
    return _WORDS_BE.pack(*_WORDS_LE.unpack(raw))


def hash_to_hex(h: bytes) -> str:
    """The string form of a 32-byte hash: each 8-byte word as a little-endian u64 in ``%016x``."""
    if len(h) != HASH_SIZE:
        raise XetFormatError(f"a Xet hash has {HASH_SIZE} bytes, not {len(h)}")
    return _word_swap(h).hex()


def is_hash_hex(s: str) -> bool:
    """Whether ``s`` is a hash string as the protocol allows it: 64 lowercase hex digits."""
    return _HEX.fullmatch(s) is not None


def hex_to_hash(s: str) -> bytes:
    """The 32 raw bytes of a hash string; rejects anything but 64 lowercase hex digits."""
    if not is_hash_hex(s):
        raise XetFormatError(f"not a Xet hash (64 lowercase hex digits): {s[:80]!r}")
    return _word_swap(bytes.fromhex(s))


def sha256_to_hex(field: bytes) -> str:
    """The ordinary sha256 hex string of a shard's word-reversed ``sha256`` field (§1.3)."""
    return hash_to_hex(field)


def hex_to_sha256(s: str) -> bytes:
    """The shard's word-reversed ``sha256`` field for an ordinary lowercase sha256 hex string."""
    return hex_to_hash(s)


def _keyed(key: bytes, data: bytes | memoryview) -> bytes:
    threads = blake3.blake3.AUTO if len(data) >= _THREADED_FROM else 1
    return blake3.blake3(data, key=key, max_threads=threads).digest()


def chunk_hash(data: bytes | memoryview) -> bytes:
    """The hash of one chunk: blake3 keyed with :data:`DATA_KEY` over its uncompressed bytes."""
    return _keyed(DATA_KEY, data)


def _low_u64(h: bytes) -> int:
    """The u64 the protocol reduces modulo N: bytes 24..32, little-endian."""
    return int.from_bytes(h[24:32], "little")


def _merge(group: Sequence[tuple[bytes, int]]) -> tuple[bytes, int]:
    text = "".join(f"{hash_to_hex(h)} : {size}\n" for h, size in group)
    return _keyed(INTERNAL_NODE_KEY, text.encode()), sum(size for _, size in group)


def _next_cut(nodes: Sequence[tuple[bytes, int]], start: int) -> int:
    """The end (exclusive) of the group that starts at ``nodes[start]``."""
    remaining = len(nodes) - start
    if remaining <= 2:
        return len(nodes)
    end = start + min(MERKLE_MAX_GROUP, remaining)
    for i in range(start + 2, end):
        if _low_u64(nodes[i][0]) % MERKLE_MEAN_BRANCHING == 0:
            return i + 1
    return end


def merkle_root(leaves: Sequence[tuple[bytes, int]]) -> bytes:
    """The root of xet-core's aggregated Merkle tree over ``(hash, size)`` leaves; 32 zero bytes for none."""
    nodes = [(bytes(h), int(size)) for h, size in leaves]
    if not nodes:
        return ZERO_HASH
    while len(nodes) > 1:
        merged: list[tuple[bytes, int]] = []
        start = 0
        while start < len(nodes):
            end = _next_cut(nodes, start)
            merged.append(_merge(nodes[start:end]))
            start = end
        nodes = merged
    return nodes[0][0]


def xorb_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The hash of a xorb: the Merkle root of its ``(chunk hash, uncompressed size)`` list, in xorb order."""
    return merkle_root(chunks)


def file_hash(chunks: Sequence[tuple[bytes, int]], *, salt: bytes = ZERO_HASH) -> bytes:
    """The Xet hash of a file: blake3 keyed with ``salt`` over the Merkle root of its chunks; zero for no chunks."""
    if len(salt) != HASH_SIZE:
        raise XetFormatError(f"a file-hash salt has {HASH_SIZE} bytes, not {len(salt)}")
    if not chunks:
        return ZERO_HASH
    return _keyed(salt, merkle_root(chunks))


def verification_hash(chunk_hashes: Sequence[bytes]) -> bytes:
    """A shard term's verification (range) hash: blake3 keyed with :data:`VERIFICATION_KEY` over the raw hashes."""
    return _keyed(VERIFICATION_KEY, b"".join(chunk_hashes))


def keyed_chunk_hash(h: bytes, key: bytes) -> bytes:
    """A chunk hash as a keyed shard lists it: blake3 keyed with ``key`` over the raw hash; a zero key keeps it."""
    if len(key) != HASH_SIZE:
        raise XetFormatError(f"a chunk HMAC key has {HASH_SIZE} bytes, not {len(key)}")
    if key == ZERO_HASH:
        return h
    return _keyed(key, h)


def eligible_for_global_dedup(h: bytes) -> bool:
    """Whether clients may ask the CAS about this chunk hash outside a file's first chunk (u64 of bytes 24..32)."""
    return _low_u64(h) % GLOBAL_DEDUP_MODULUS == 0
