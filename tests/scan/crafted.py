"""Builders for hand-made pickles, zips and protobufs: the evasions are bytes written here, never pickled."""

from __future__ import annotations

import io
import struct
import zipfile

__all__ = ["P2", "P4", "STOP", "binunicode", "call", "frame", "glob", "pb", "sg", "u", "varint", "zip_bytes"]

P2 = b"\x80\x02"
P4 = b"\x80\x04"
STOP = b"."
MARK = b"("
TUPLE = b"t"
REDUCE = b"R"


def u(s: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def binunicode(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def glob(module: str, name: str) -> bytes:
    """GLOBAL (text form)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL of two SHORT_BINUNICODE strings."""
    return u(module) + u(name) + b"\x93"


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` via REDUCE."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def frame(body: bytes, length: int | None = None) -> bytes:
    """A FRAME opcode announcing ``length`` (default: the true length) followed by ``body``."""
    return b"\x95" + struct.pack("<Q", len(body) if length is None else length) + body


def zip_bytes(members: dict[str, bytes], *, compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(number: int, value: int | bytes | str) -> bytes:
    """One protobuf field: varint for ints, length-delimited for bytes and str."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw
