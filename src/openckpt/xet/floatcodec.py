"""Lossless coding of chunk bytes at rest: float tensors as byte planes (each byte of an element in a plane of its
own, every plane Huffman-coded by huff0 or kept raw: ZipNN's method, :mod:`.huff`), other bytes by zstd, or raw;
chosen per frame by measuring a sample.

A frame is a run of whole chunks of one xorb. Chunks are cut anywhere in a tensor, so a frame need not start on an
element: ``phase`` bytes at its start and the tail that is not a whole element are kept aside raw, and the body
between them is coded as 2-byte (bf16) or 4-byte (fp32) elements. :func:`choose` tries zstd and each float width at
each phase on a sample from the middle of the frame and keeps the smallest; :func:`encode_frame` never stores more
than a header over raw. Frames are self-describing (codec, phase, lengths), and decoding checks every declared
length. Planes decode with the GIL released (huff0 through ctypes, numpy copies), so frames decode on two cores at
once while the event loop sends. Frames coded by the ``zipnn`` package itself (codecs 2 and 3, written before the
planes) are still decoded.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from openckpt.errors import XetFormatError
from openckpt.xet import huff

__all__ = ["BF16", "FP32", "RAW", "ZSTD", "Choice", "choose", "decode_frame", "encode_frame", "frame_codec"]

RAW = 0
ZSTD = 1
ZIPNN_BF16 = 2
ZIPNN_FP32 = 3
BF16 = 4
FP32 = 5
_NAMES = {RAW: "raw", ZSTD: "zstd", ZIPNN_BF16: "bf16-zipnn", ZIPNN_FP32: "fp32-zipnn", BF16: "bf16", FP32: "fp32"}
_ELEMENT = {ZIPNN_BF16: 2, ZIPNN_FP32: 4, BF16: 2, FP32: 4}
_PLANES = (BF16, FP32)
_ZIPNN_DTYPE = {ZIPNN_BF16: "bfloat16", ZIPNN_FP32: "float32"}
LEVEL = 1
"""zstd level: on exponent-heavy bytes level 1 codes smaller than level 3 (its matches cost more than they save)."""
SAMPLE = 256 << 10
"""Bytes of a frame every candidate is tried on before the winner codes the whole frame."""
MIN_BODY = 4096
"""Shorter float bodies are not worth ZipNN's header."""
_HEAD = struct.Struct("<BBIII")  # codec, phase, raw length, body length (coded), edges length
_local = threading.local()


def _zstd() -> Any:
    import zstandard

    return zstandard


def _zipnn(codec: int) -> Any:
    """This thread's ZipNN coder for ``codec`` (single-threaded: frames are coded by the caller's threads)."""
    coders = getattr(_local, "coders", None)
    if coders is None:
        coders = _local.coders = {}
    if codec not in coders:
        import zipnn  # type: ignore[import-untyped]

        coders[codec] = zipnn.ZipNN(bytearray_dtype=_ZIPNN_DTYPE[codec], input_format="byte", threads=1)
    return coders[codec]


def available() -> bool:
    """Whether ZipNN can be imported here (without it, only zstd and raw are chosen)."""
    try:
        import zipnn  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Choice:
    """A codec and, for floats, the byte of the frame where the first whole element starts."""

    codec: int
    phase: int = 0

    @property
    def name(self) -> str:
        return _NAMES.get(self.codec, f"unknown {self.codec}") + (f"+{self.phase}" if self.phase else "")


def _zipnn_encode(view: memoryview, choice: Choice) -> bytes:
    return bytes(_zipnn(choice.codec).compress(bytes(view)))


def _planes(view: memoryview, width: int) -> bytes:
    """Elements of ``width`` bytes as ``width`` planes, each coded by :func:`huff.encode_plane`."""
    grid = np.frombuffer(view, np.uint8).reshape(-1, width)
    return b"".join(huff.encode_plane(np.ascontiguousarray(grid[:, i])) for i in range(width))


def _unplanes(view: memoryview, codec: int, phase: int, size: int, body_len: int) -> bytearray:
    """A frame of byte planes decoded: each plane straight into its column of the output."""
    width = _ELEMENT[codec]
    edges = view[_HEAD.size + body_len :]
    end = phase + (size - phase) // width * width
    if len(edges) != size - (end - phase) or end - phase < width:
        raise XetFormatError("plane frame edges do not match its length")
    out = bytearray(size)
    flat = np.frombuffer(out, np.uint8)
    flat[:phase] = np.frombuffer(edges[:phase], np.uint8)
    flat[end:] = np.frombuffer(edges[phase:], np.uint8)
    grid = flat[phase:end].reshape(-1, width)
    body = view[_HEAD.size : _HEAD.size + body_len]
    at = 0
    for i in range(width):
        at += huff.decode_plane(body[at:], grid[:, i])
    if at != body_len:
        raise XetFormatError("plane frame holds bytes past its planes")
    return out


def _encode_with(view: memoryview, choice: Choice) -> bytes:
    size = len(view)
    if choice.codec == ZSTD:
        packed: bytes = _zstd().ZstdCompressor(level=LEVEL).compress(view)
        return _HEAD.pack(ZSTD, 0, size, len(packed), 0) + packed
    if choice.codec in _ELEMENT:
        width, phase = _ELEMENT[choice.codec], choice.phase
        end = phase + (size - phase) // width * width
        if end - phase >= MIN_BODY:
            body = (
                _planes(view[phase:end], width) if choice.codec in _PLANES else _zipnn_encode(view[phase:end], choice)
            )
            edges = bytes(view[:phase]) + bytes(view[end:])
            return _HEAD.pack(choice.codec, phase, size, len(body), len(edges)) + body + edges
    return _HEAD.pack(RAW, 0, size, size, 0) + bytes(view)


def choose(data: bytes | memoryview) -> Choice:
    """The codec (and phase) that codes a sample from the middle of ``data`` smallest; raw unless one saves 1%."""
    view = memoryview(data).cast("B")
    lo = max(0, (len(view) - SAMPLE) // 2) & ~3
    sample = view[lo : lo + SAMPLE]
    candidates = [Choice(ZSTD)]
    floats = _PLANES if huff.available() else (ZIPNN_BF16, ZIPNN_FP32) if available() else ()
    candidates += [Choice(c, p) for c in floats for p in range(_ELEMENT[c])]
    best, best_size = Choice(RAW), len(sample) * 0.99
    for choice in candidates:
        size = len(_encode_with(sample, choice))
        if size < best_size:
            best, best_size = choice, size
    if best.codec in _ELEMENT:  # the phase is the sample's, counted from the frame's start
        best = Choice(best.codec, (best.phase + lo) % _ELEMENT[best.codec])
    return best


def encode_frame(data: bytes | memoryview, choice: Choice | None = None) -> bytes:
    """``data`` as one self-describing frame coded by ``choice`` (measured by :func:`choose` if not given); never
    more than a header over raw."""
    view = memoryview(data).cast("B")
    out = _encode_with(view, choice or choose(view))
    return out if len(out) < _HEAD.size + len(view) else _encode_with(view, Choice(RAW))


def frame_codec(frame: bytes | memoryview) -> str:
    """The name of the codec that coded ``frame``."""
    codec, phase, *_ = _HEAD.unpack_from(frame, 0)
    return Choice(codec, phase).name


def decode_frame(frame: bytes | memoryview) -> bytes | bytearray:
    """The bytes :func:`encode_frame` coded, checked against the lengths its header declares."""
    view = memoryview(frame).cast("B")
    if len(view) < _HEAD.size:
        raise XetFormatError("truncated frame header")
    codec, phase, size, body_len, edges_len = _HEAD.unpack_from(view, 0)
    if len(view) != _HEAD.size + body_len + edges_len:
        raise XetFormatError(f"frame of {len(view)} bytes does not match its header")
    body = view[_HEAD.size : _HEAD.size + body_len]
    if codec == RAW:
        out = bytes(body)
    elif codec == ZSTD:
        try:
            out = _zstd().ZstdDecompressor().decompress(body, max_output_size=size)
        except _zstd().ZstdError as e:
            raise XetFormatError(f"corrupt zstd frame ({e})") from None
    elif codec in _PLANES and phase < _ELEMENT[codec] and edges_len >= phase:
        return _unplanes(view, codec, phase, size, body_len)
    elif codec in _ELEMENT and phase < _ELEMENT[codec] and edges_len >= phase:
        try:
            middle = _zipnn(codec).decompress(bytes(body))
        except Exception as e:  # ZipNN raises plain exceptions on damaged input
            raise XetFormatError(f"corrupt ZipNN frame ({e})") from None
        edges = view[_HEAD.size + body_len :]
        out = b"".join((edges[:phase], middle, edges[phase:]))
    else:
        raise XetFormatError(f"unknown frame codec {codec} (phase {phase})")
    if len(out) != size:
        raise XetFormatError(f"frame decodes to {len(out)} bytes, its header declares {size}")
    return out
