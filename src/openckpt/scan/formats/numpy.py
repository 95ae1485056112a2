"""numpy ``.npy`` arrays (``.npz`` is a zip of them): object arrays are pickles, scanned with numpy's loader.

The header is a Python literal read with :func:`ast.literal_eval` (no code runs), at most 64 KiB as numpy's own
``max_header_size`` guard. A numeric array's bytes are never read: only their length is checked.
"""

from __future__ import annotations

import ast
import math
import struct
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.pickle.machine import Nested
from openckpt.scan.pickle.streams import OnBuild, scan_streams
from openckpt.scan.verdict import Severity

__all__ = ["MAGIC", "scan_npy"]

MAGIC = b"\x93NUMPY"
MAX_HEADER = 64 << 10


def _header(buf: Any, start: int, end: int) -> tuple[dict[str, Any], int]:
    major = buf[start + 6] if start + 8 <= end else 0
    if major == 1:
        (n,) = struct.unpack_from("<H", buf, start + 8)
        pos = start + 10
    elif major in (2, 3):
        (n,) = struct.unpack_from("<I", buf, start + 8)
        pos = start + 12
    else:
        raise ValueError(f"unsupported .npy version {major}")
    if n > MAX_HEADER or pos + n > end:
        raise ValueError(f"header of {n} bytes is too long or truncated")
    text = bytes(buf[pos : pos + n]).decode("utf-8" if major == 3 else "latin-1")
    header = ast.literal_eval(text)
    if not isinstance(header, dict) or not {"descr", "shape", "fortran_order"} <= set(header):
        raise ValueError("header is not a dict with descr, shape and fortran_order")
    return header, pos + n


def scan_npy(
    ctx: Context, buf: Any, start: int, end: int, *, member: str | None, nested: Nested, on_build: OnBuild
) -> None:
    """Validate an ``.npy`` header; scan the pickle of an object array; check a numeric array's length."""
    import numpy as np

    try:
        header, data = _header(buf, start, end)
        dtype = np.lib.format.descr_to_dtype(header["descr"])
        shape = tuple(header["shape"])
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"invalid shape {shape!r}")
    except (ValueError, SyntaxError, TypeError, struct.error, MemoryError, RecursionError) as e:
        ctx.add("npy-invalid", Severity.INFO, f"invalid .npy header: {e}", member=member, inconclusive=True)
        return
    if dtype.hasobject:
        scan_streams(ctx, buf, data, end, member=member, loader="numpy", nested=nested, on_build=on_build, limit=1)
        return
    size = math.prod(shape) * dtype.itemsize
    if data + size > end:
        ctx.add("npy-truncated", Severity.INFO, "array data is truncated", member=member, inconclusive=True)
    elif data + size < end:
        reason = f"{end - data - size} bytes of trailing data after the array"
        ctx.add("npy-trailing-data", Severity.INFO, reason, member=member, offset=data + size, inconclusive=True)
