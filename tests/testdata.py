"""Test payloads that every scanner sees as opaque binary data, never as a possible pickle."""

from __future__ import annotations

import os

#: No pickle opcode, compression magic, zip, safetensors or protobuf header starts this way, so the gate files
#: the bytes as "not a recognised model format" every time instead of by chance of their first byte.
OPAQUE_PREFIX = b"\x00\x00openckpt-test-bytes\x00"


def opaque_bytes(size: int) -> bytes:
    """``size`` random bytes (unique per call) that start with :data:`OPAQUE_PREFIX`."""
    if size <= len(OPAQUE_PREFIX):
        return OPAQUE_PREFIX[:size]
    return OPAQUE_PREFIX + os.urandom(size - len(OPAQUE_PREFIX))
