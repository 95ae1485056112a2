"""huff0 byte planes (``openckpt.xet.huff``) and the float frames built on them: exact round trips for coded, raw and
one-byte blocks, damage found, and frames coded by the ``zipnn`` package before the planes still decoded."""

from __future__ import annotations

import numpy as np
import pytest

from openckpt.errors import XetFormatError
from openckpt.xet import floatcodec, huff

pytestmark = pytest.mark.skipif(not huff.available(), reason="huff0 (the zipnn package) is not installed")


def _plane(kind: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "skewed":
        return rng.geometric(0.4, n).clip(0, 255).astype(np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, n, dtype=np.uint8)
    return np.full(n, 42, np.uint8)


@pytest.mark.parametrize("kind", ["skewed", "noise", "constant"])
@pytest.mark.parametrize("n", [1, 1000, huff.BLOCK, 3 * huff.BLOCK + 17])
def test_planes_round_trip(kind: str, n: int) -> None:
    plane = _plane(kind, n)
    coded = huff.encode_plane(plane)
    out = np.zeros(2 * n, np.uint8)
    assert huff.decode_plane(memoryview(coded + b"tail"), out[1::2]) == len(coded)
    assert np.array_equal(out[1::2], plane) and not out[0::2].any()
    if kind == "skewed" and n > 1000:
        assert len(coded) < n * 0.5


def test_damaged_planes_are_errors() -> None:
    coded = bytearray(huff.encode_plane(_plane("skewed", 2 * huff.BLOCK)))
    with pytest.raises(XetFormatError):
        huff.decode_plane(memoryview(bytes(coded[:-3])), np.zeros(2 * huff.BLOCK, np.uint8))
    coded[0:4] = (0).to_bytes(4, "little")
    with pytest.raises(XetFormatError):
        huff.decode_plane(memoryview(bytes(coded)), np.zeros(2 * huff.BLOCK, np.uint8))


@pytest.mark.parametrize("codec", [floatcodec.ZIPNN_BF16, floatcodec.ZIPNN_FP32])
def test_frames_coded_by_zipnn_still_decode(codec: int) -> None:
    values = np.random.default_rng(3).normal(0, 0.02, 100_000).astype(np.float32)
    data = b"x" + (values.view(np.uint32) >> 16).astype(np.uint16).tobytes() + b"yz"
    frame = floatcodec.encode_frame(data, floatcodec.Choice(codec, 1))
    assert floatcodec.frame_codec(frame).endswith("zipnn+1")
    assert floatcodec.decode_frame(frame) == data
