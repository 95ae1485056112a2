"""GGUF (llama.cpp) files: every count and length bounded by the bytes left, tensor types and extents checked,
and chat templates searched for Jinja sandbox escapes (CVE-2024-34359)."""

from __future__ import annotations

import math
import re
import struct
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.verdict import Severity

__all__ = ["MAGIC", "check_template", "scan"]

MAGIC = b"GGUF"
# ggml type → (block bytes, elements per block)
GGML_TYPES = {
    0: (4, 1),
    1: (2, 1),
    2: (18, 32),
    3: (20, 32),
    6: (22, 32),
    7: (24, 32),
    8: (34, 32),
    9: (36, 32),
    10: (84, 256),
    11: (110, 256),
    12: (144, 256),
    13: (176, 256),
    14: (210, 256),
    15: (292, 256),
    16: (66, 256),
    17: (74, 256),
    18: (98, 256),
    19: (50, 256),
    20: (18, 32),
    21: (110, 256),
    22: (82, 256),
    23: (136, 256),
    24: (1, 1),
    25: (2, 1),
    26: (4, 1),
    27: (8, 1),
    28: (8, 1),
    29: (56, 256),
    30: (2, 1),
    34: (54, 256),
    35: (66, 256),
    39: (17, 32),
}
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_ESCAPES = re.compile(
    r"__\w+__|\|\s*attr\b|\battr\s*\(|\b(lipsum|cycler|joiner|namespace|self|config|request|url_for|get_flashed"
    r"_messages)\s*\.|\b(os|subprocess|sys|builtins|importlib)\b\s*\.|\b(popen|system|eval|exec|__import__)\s*\("
)
_MAX_DIMS = 4


class _GGUFError(ValueError):
    pass


class _Reader:
    def __init__(self, buf: Any, pos: int, end: int, version: int) -> None:
        self.buf, self.pos, self.end, self.version = buf, pos, end, version

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > self.end:
            raise _GGUFError(f"truncated at offset {self.pos}")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def count(self, min_size: int) -> int:
        n: int = self.unpack("<I" if self.version == 1 else "<Q")
        if n * min_size > self.end - self.pos:
            raise _GGUFError(f"count {n} at offset {self.pos} exceeds the bytes left")
        return n

    def string(self) -> str:
        n = self.count(1)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def value(self, kind: int, depth: int = 0) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            if depth > 4:
                raise _GGUFError("arrays nested too deep")
            item = self.unpack("<I")
            n = self.count(1)
            values = [self.value(item, depth + 1) for _ in range(n)]
            return values if item == 8 else None
        raise _GGUFError(f"unknown value type {kind}")


def check_template(ctx: Context, key: str, template: str, member: str | None) -> None:
    """A chat template that reaches Python internals escapes Jinja's sandbox (and every template is unsandboxed
    in some loaders)."""
    m = _ESCAPES.search(template)
    if m:
        reason = f"{key} reaches Python internals ({m.group(0)!r}): Jinja sandbox escape"
        ctx.add("gguf-template", Severity.MALICIOUS, reason, member=member, callable=key)


def _metadata(ctx: Context, r: _Reader, n_kv: int, member: str | None) -> int:
    """Read the ``n_kv`` metadata pairs, checking chat templates; return the data alignment."""
    alignment = 32
    for _ in range(n_kv):
        key = r.string()
        value = r.value(r.unpack("<I"))
        if "chat_template" in key:
            for template in value if isinstance(value, list) else [value]:
                if isinstance(template, str):
                    check_template(ctx, key, template, member)
        if key == "general.alignment":
            if not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise _GGUFError(f"general.alignment {value!r} is not a power of two")
            alignment = value
    return alignment


def _tensor_infos(r: _Reader, n_tensors: int) -> list[tuple[str, list[int], int, int]]:
    """Read the ``n_tensors`` tensor infos: (name, shape, ggml type, offset), dimensions and type checked."""
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = r.unpack("<I")
        if dims > _MAX_DIMS:
            raise _GGUFError(f"tensor {name!r} has {dims} dimensions")
        shape = [r.unpack("<Q") for _ in range(dims)]
        kind, offset = r.unpack("<I"), r.unpack("<Q")
        if kind not in GGML_TYPES:
            raise _GGUFError(f"tensor {name!r} has unknown ggml type {kind}")
        tensors.append((name, shape, kind, offset))
    return tensors


def scan(ctx: Context, buf: Any, start: int, end: int, *, member: str | None) -> None:
    """Parse the header, metadata and tensor infos with bounds on everything."""
    try:
        version = struct.unpack_from("<I", buf, start + 4)[0] if end - start >= 8 else 0
        if version not in (1, 2, 3):
            raise _GGUFError(f"unsupported GGUF version {version}")
        r = _Reader(buf, start + 8, end, version)
        n_tensors = r.count(24)
        n_kv = r.count(12)
        alignment = _metadata(ctx, r, n_kv, member)
        tensors = _tensor_infos(r, n_tensors)
        data = start + -(-(r.pos - start) // alignment) * alignment
        for name, shape, kind, offset in tensors:
            count = math.prod(shape)
            block, per = GGML_TYPES[kind]
            if count % per:
                raise _GGUFError(f"tensor {name!r}: {count} elements is not a multiple of the block size {per}")
            if offset % alignment or data + offset + count // per * block > end:
                raise _GGUFError(f"tensor {name!r} lies outside the data section or is misaligned")
    except _GGUFError as e:
        ctx.add("gguf-invalid", Severity.SUSPICIOUS, f"invalid GGUF file: {e}", member=member)
