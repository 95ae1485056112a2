"""Huffman coding of byte planes by huff0 (Yann Collet's entropy coder, the one ZipNN and zstd use), called through
ctypes so that the GIL is released while it runs: two threads code or decode two planes at once.

huff0 ships, with its symbols exported, inside the ``zipnn`` package's C extension (``zipnn_core``); nothing else
is taken from it. A plane is coded in blocks of :data:`BLOCK` bytes (huff0's limit), each stored as huff0 codes
it, or raw when coding would not save (its coded length is then the block's), or as one byte when every byte of it
is that byte.
"""

from __future__ import annotations

import ctypes
import struct
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from openckpt.errors import XetFormatError

__all__ = ["BLOCK", "available", "decode_plane", "encode_plane"]

BLOCK = 128 << 10
"""Bytes of a plane per huff0 block (HUF_BLOCKSIZE_MAX)."""
_SIZES = struct.Struct("<I")
_RUN = 16 * BLOCK
"""Plane bytes decoded into a buffer before one copy into place."""


@cache
def _lib() -> Any:
    """huff0's entry points in ``zipnn_core``, or None where that extension or its symbols are missing."""
    try:
        import zipnn_core  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        lib = ctypes.CDLL(str(Path(zipnn_core.__file__)))  # CDLL: every call releases the GIL
        for name in ("HUF_compress", "HUF_decompress"):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_size_t
            fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
        lib.HUF_isError.restype = ctypes.c_uint
        lib.HUF_isError.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return lib


def available() -> bool:
    """Whether huff0 can be called here."""
    return _lib() is not None


def encode_plane(plane: np.ndarray[Any, np.dtype[np.uint8]]) -> bytes:
    """``plane`` (contiguous bytes) as a table of coded block lengths (u32 each) and the coded blocks."""
    lib = _lib()
    if lib is None:
        raise XetFormatError("huff0 is not available (the zipnn package is not installed)")
    n = len(plane)
    sizes: list[int] = []
    parts: list[bytes] = []
    out = np.empty(BLOCK + (BLOCK >> 7) + 1024, np.uint8)
    base = plane.ctypes.data
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        got = int(lib.HUF_compress(out.ctypes.data, len(out), base + lo, hi - lo))
        if lib.HUF_isError(got) or got == 0 or got >= hi - lo:  # 0: not compressible; stored raw
            parts.append(plane[lo:hi].tobytes())
        elif got == 1:  # every byte the same
            parts.append(plane[lo : lo + 1].tobytes())
        else:
            parts.append(out[:got].tobytes())
        sizes.append(len(parts[-1]))
    return struct.pack(f"<{len(sizes)}I", *sizes) + b"".join(parts)


def _flush(dst: Any, src: Any, tmp: Any, lo: int, hi: int, at: int, raw: bool) -> None:
    """Copy plane bytes ``[lo, hi)`` into ``dst``: from ``src`` at ``at`` (a run of raw blocks), else from ``tmp``."""
    dst[lo:hi] = src[at : at + hi - lo] if raw else tmp[: hi - lo]


def decode_plane(coded: memoryview, dst: np.ndarray[Any, np.dtype[np.uint8]]) -> int:
    """Decode a plane of ``len(dst)`` bytes from the start of ``coded`` into ``dst`` (a view, strided or not: runs of
    up to :data:`_RUN` bytes of coded blocks are decoded into a buffer, then copied into place by one call, and runs
    of raw blocks copied straight from ``coded``); the bytes of ``coded`` used."""
    lib = _lib()
    if lib is None:
        raise XetFormatError("huff0 is not available (the zipnn package is not installed)")
    n = len(dst)
    blocks = -(-n // BLOCK)
    if len(coded) < 4 * blocks:
        raise XetFormatError("truncated plane")
    sizes = struct.unpack_from(f"<{blocks}I", coded, 0)
    at = 4 * blocks
    if at + sum(sizes) > len(coded):
        raise XetFormatError("truncated plane")
    src = np.frombuffer(coded, np.uint8)
    base = src.ctypes.data
    tmp = np.empty(min(n, _RUN), np.uint8)
    scratch = tmp.ctypes.data
    run_lo, run_at = 0, at  # a run of blocks copied into ``dst`` at once (few GIL round trips per plane)
    raw_run = True
    for b, size in enumerate(sizes):
        lo = b * BLOCK
        length = min(BLOCK, n - lo)
        raw = size == length
        if lo > run_lo and (raw != raw_run or lo - run_lo + length > len(tmp)):
            _flush(dst, src, tmp, run_lo, lo, run_at, raw_run)
            run_lo, run_at = lo, at
        if lo == run_lo:
            raw_run = raw
        if raw:
            pass
        elif size == 1:
            tmp[lo - run_lo : lo - run_lo + length] = src[at]
        elif size == 0 or size > length:
            raise XetFormatError("plane block of impossible length")
        else:
            got = int(lib.HUF_decompress(scratch + lo - run_lo, length, base + at, size))
            if lib.HUF_isError(got) or got != length:
                raise XetFormatError("corrupt huff0 block")
        at += size
    if n:
        _flush(dst, src, tmp, run_lo, n, run_at, raw_run)
    return at
