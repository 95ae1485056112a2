"""A minimal protobuf wire-format reader: enough to walk ONNX and SavedModel messages without their schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["ProtobufError", "fields", "varint"]


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """Decode a varint at ``pos``: ``(value, next position)``."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ProtobufError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def fields(buf: Any, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` for each field; length-delimited values are ``(start, end)`` spans."""
    pos = start
    while pos < end:
        key, pos = varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value, pos = varint(buf, pos, end)
            yield number, wire, value
        elif wire == 1:
            if pos + 8 > end:
                raise ProtobufError("truncated fixed64")
            yield number, wire, None
            pos += 8
        elif wire == 2:
            n, pos = varint(buf, pos, end)
            if pos + n > end:
                raise ProtobufError("length-delimited field runs past the end")
            yield number, wire, (pos, pos + n)
            pos += n
        elif wire == 5:
            if pos + 4 > end:
                raise ProtobufError("truncated fixed32")
            yield number, wire, None
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def text(buf: Any, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", "replace")
