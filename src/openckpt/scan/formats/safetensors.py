"""safetensors, validated strictly: the reference rules plus what makes parsers disagree.

Header length <= 100,000,000 and inside the file, starting with ``{``, UTF-8 JSON without duplicate keys or
non-finite numbers, ``__metadata__`` mapping str to str, known dtypes, non-negative shapes whose byte size
(overflow-guarded) equals ``end - begin``, offsets sorted and contiguous from 0 to the end of the file.
A violation is ``suspicious`` (the reference loader refuses the file, others may read it differently).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.verdict import Severity

__all__ = ["BITS", "MAX_HEADER", "check_header", "scan"]

MAX_HEADER = 100_000_000
BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C64": 64,
}
_LIMIT = 1 << 64


class _InvalidError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _InvalidError(f"duplicate key {key!r} (parsers disagree on which one wins)")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise _InvalidError(f"non-standard JSON constant {name}")


def _parse(raw: bytes) -> dict[str, Any]:
    """The header ``raw`` as a JSON object: UTF-8, starting with ``{``, no duplicate keys or non-finite numbers."""
    if not raw.startswith(b"{"):
        raise _InvalidError("header does not start with '{'")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _InvalidError(f"header is not UTF-8: {e.reason}") from None
    try:
        header = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise _InvalidError(f"header is not JSON: {e.msg}") from None
    if not isinstance(header, dict):
        raise _InvalidError("header is not a JSON object")
    return header


def _span(name: str, info: Any) -> tuple[int, int, str]:
    """(begin, end, name) of one tensor entry, whose byte size must equal its dtype x shape (no overflow)."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise _InvalidError(f"tensor {name!r}: entry must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in BITS:
        raise _InvalidError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise _InvalidError(f"tensor {name!r}: shape must be a list of non-negative integers")
    bits = BITS[dtype]
    for n in shape:
        bits *= n
        if bits >= _LIMIT * 8:
            raise _InvalidError(f"tensor {name!r}: shape x dtype overflows 64 bits")
    if bits % 8:
        raise _InvalidError(f"tensor {name!r}: {bits} bits is not a whole number of bytes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int and n >= 0 for n in offsets)):
        raise _InvalidError(f"tensor {name!r}: data_offsets must be two non-negative integers")
    begin, end = offsets
    if end < begin or end - begin != bits // 8:
        raise _InvalidError(f"tensor {name!r}: {end - begin} bytes for shape {shape} of {dtype}")
    return begin, end, name


def check_header(raw: bytes, data_size: int) -> None:
    """Raise ``ValueError`` with the first violation of the header ``raw`` for ``data_size`` bytes of data."""
    header = _parse(raw)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _InvalidError("__metadata__ must map strings to strings")
    pos = 0
    for begin, end, name in sorted(_span(name, info) for name, info in header.items()):
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a gap of {begin - pos} bytes"
            raise _InvalidError(f"tensor {name!r} {what}")
        pos = end
    if pos != data_size:
        raise _InvalidError(f"tensors cover {pos} bytes, the data section has {data_size}")


def scan(ctx: Context, buf: Any, start: int, end: int, *, member: str | None) -> None:
    """Validate the header; tensor bytes are never read."""
    size = end - start
    (n,) = struct.unpack_from("<Q", buf, start)
    try:
        if n > MAX_HEADER:
            raise _InvalidError(f"header length {n} exceeds {MAX_HEADER}")
        if 8 + n > size:
            raise _InvalidError(f"header length {n} runs past the end of the file")
        check_header(bytes(buf[start + 8 : start + 8 + n]), size - 8 - n)
    except _InvalidError as e:
        ctx.add("safetensors-invalid", Severity.SUSPICIOUS, f"invalid safetensors file: {e}", member=member)
