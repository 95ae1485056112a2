"""Xet hashes against xet-core's reference Merkle vectors and the spec's worked examples."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from openckpt.errors import FormatError, XetFormatError
from openckpt.xet.hashes import (
    ZERO_HASH,
    chunk_hash,
    eligible_for_global_dedup,
    file_hash,
    hash_to_hex,
    hex_to_hash,
    hex_to_sha256,
    is_hash_hex,
    keyed_chunk_hash,
    sha256_to_hex,
    verification_hash,
    xorb_hash,
)

HELLO = b"hello world"


def test_string_form_reverses_each_8_byte_word() -> None:
    raw = bytes(range(32))
    assert hash_to_hex(raw) == "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert hash_to_hex(raw) != raw.hex()
    assert hex_to_hash(hash_to_hex(raw)) == raw


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0" * 63,
        "0" * 65,
        "G" + "0" * 63,
        "A" * 64,  # the protocol demands lowercase
        " " + "0" * 63,
        "0" * 64 + "\n",
        # the official api.md example, one byte short
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"[:62],
    ],
)
def test_hex_to_hash_rejects_anything_but_64_lowercase_hex_digits(text: str) -> None:
    assert not is_hash_hex(text)
    with pytest.raises(XetFormatError) as info:
        hex_to_hash(text)
    assert isinstance(info.value, FormatError) and isinstance(info.value, ValueError)


def test_hash_to_hex_rejects_a_wrong_length() -> None:
    with pytest.raises(XetFormatError):
        hash_to_hex(bytes(31))


def test_shard_sha256_field_is_word_reversed() -> None:
    digest = hashlib.sha256(HELLO).hexdigest()
    assert digest == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    field = hex_to_sha256(digest)
    assert field.hex() == "083e4d93b9274db9faab7ddad7522ea5ee80537ae3ef84c4e9cdefe2acf78890"
    assert sha256_to_hex(field) == digest


def test_chunk_term_and_file_hash_of_hello_world() -> None:
    h = chunk_hash(HELLO)
    assert hash_to_hex(h) == "4e39378b9d359f118190557a1f44130219a54e5fcfa07bd96cf50b466fe651b1"
    assert xorb_hash([(h, len(HELLO))]) == h  # a one-chunk xorb's hash is its chunk hash
    assert hash_to_hex(verification_hash([h])) == "22ef2fdcff5cea306e42ad7e15ed8a0c5e789e7d2ec34658c10d2758946847da"
    assert hash_to_hex(file_hash([(h, len(HELLO))])) == (
        "f15edd43b7e85cfd25e2758ffe13b99fdd09dfa817e8d9f6548722a7a126db7f"
    )


def test_empty_file_hashes_to_zero() -> None:
    assert file_hash([]) == ZERO_HASH
    assert xorb_hash([]) == ZERO_HASH


def test_every_xet_core_merkle_vector(data: Path) -> None:
    """All 18 cases of xet-core's ``aggregated_hashes.rs::test_correctness``, each with its three salts."""
    cases = json.loads((data / "merkle_vectors.json").read_text())
    assert len(cases) == 18
    checked = 0
    for case in cases:
        leaves = [(hex_to_hash(h), size) for h, size in case["nodes"]]
        assert hash_to_hex(xorb_hash(leaves)) == case["xorb"], case["nodes"]
        for salt, expected in case["salts"]:
            assert hash_to_hex(file_hash(leaves, salt=hex_to_hash(salt))) == expected
            checked += 1
    assert checked == 54


def test_spec_example_of_three_leaves(data: Path) -> None:
    cases = json.loads((data / "merkle_vectors.json").read_text())
    (case,) = [c for c in cases if [size for _, size in c["nodes"]] == [100, 200, 300]]
    leaves = [(hex_to_hash(h), size) for h, size in case["nodes"]]
    assert hash_to_hex(xorb_hash(leaves)) == "71ec1275fca074724e2dd666921b3277c7cee603e4d025bcab2d4050015be2bc"
    assert hash_to_hex(file_hash(leaves)) == "54e55dccc6653c612bdb5576c5d3cb34bb31bc4e100248abccf4c908b3ef7715"


def test_keyed_chunk_hash_is_blake3_keyed_with_the_shard_key() -> None:
    import blake3

    h, key = chunk_hash(HELLO), bytes(range(1, 33))
    assert keyed_chunk_hash(h, key) == blake3.blake3(h, key=key).digest()
    assert keyed_chunk_hash(h, ZERO_HASH) == h  # a zero key means "not keyed"
    with pytest.raises(XetFormatError):
        keyed_chunk_hash(h, b"short")


def test_global_dedup_eligibility_reads_bytes_24_to_32_little_endian() -> None:
    assert eligible_for_global_dedup(bytes(32))
    assert eligible_for_global_dedup(bytes(24) + (1024 * 7).to_bytes(8, "little"))
    assert not eligible_for_global_dedup(bytes(24) + (1024 * 7 + 1).to_bytes(8, "little"))
    assert not eligible_for_global_dedup(bytes(24) + (512).to_bytes(8, "little"))
    assert eligible_for_global_dedup(b"\xff" * 24 + bytes(8))  # bytes 0..24 do not matter
