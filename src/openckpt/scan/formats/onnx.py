"""ONNX models: ``external_data`` locations must stay inside the model's directory, as plain files.

Walks ``ModelProto.graph`` (and the subgraphs of If/Loop/Scan attributes and model functions) with the
wire-format reader; tensor bytes are skipped, never decoded.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from openckpt.scan.formats.protobuf import ProtobufError, fields, text
from openckpt.scan.limits import Context
from openckpt.scan.verdict import Severity

__all__ = ["scan", "sniff_protobuf"]

_MAX_DEPTH = 32


def sniff_protobuf(buf: Any, start: int, end: int) -> str | None:
    """``onnx``, ``savedmodel``, other ``protobuf`` data (all of it well-formed), or ``None``."""
    first = buf[start] if end - start >= 2 else 0x80
    if first >= 0x80 or first >> 3 == 0 or first & 7 not in (0, 1, 2, 5):
        return None
    seen: set[int] = set()
    count = 0
    try:
        for number, wire, _ in fields(buf, start, end):
            seen.add(number * 8 + wire)
            count += 1
            if count > 1_000_000:
                return None
    except ProtobufError:
        return None
    if first == 0x08 and 1 * 8 + 0 in seen and 7 * 8 + 2 in seen:
        return "onnx"
    if first in (0x08, 0x12) and seen <= {1 * 8 + 0, 2 * 8 + 2} and 2 * 8 + 2 in seen:
        return "savedmodel"
    return "protobuf" if count >= 2 else None


class _Walk:
    def __init__(self, ctx: Context, buf: Any, member: str | None) -> None:
        self.ctx, self.buf, self.member = ctx, buf, member
        self.base = Path(ctx.file).parent if member is None and ctx.file else None

    def graph(self, span: tuple[int, int], depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise self.ctx.limit("ONNX subgraphs nested too deep", member=self.member)
        for number, wire, value in fields(self.buf, *span):
            if wire != 2:
                continue
            if number in (5, 15):  # initializer, sparse_initializer
                self.tensor(value)
            elif number == 1:  # node
                self.node(value, depth)

    def node(self, span: tuple[int, int], depth: int) -> None:
        for number, wire, value in fields(self.buf, *span):
            if number == 5 and wire == 2:  # attribute
                for a_num, a_wire, a_val in fields(self.buf, *value):
                    if a_wire != 2:
                        continue
                    if a_num in (5, 10):  # t, tensors
                        self.tensor(a_val)
                    elif a_num in (6, 11):  # g, graphs
                        self.graph(a_val, depth + 1)

    def tensor(self, span: tuple[int, int]) -> None:
        for number, wire, value in fields(self.buf, *span):
            if number == 13 and wire == 2:  # external_data
                entry = {n: text(self.buf, v) for n, w, v in fields(self.buf, *value) if w == 2}
                if entry.get(1) == "location":
                    self.location(entry.get(2, ""))

    def location(self, loc: str) -> None:
        ctx, member = self.ctx, self.member
        bad = (
            not loc
            or PurePosixPath(loc).is_absolute()
            or PureWindowsPath(loc).is_absolute()
            or PureWindowsPath(loc).drive
            or ".." in PurePosixPath(loc.replace("\\", "/")).parts
            or "\x00" in loc
        )
        if bad:
            reason = f"external_data location {loc!r} leaves the model directory"
            ctx.add("onnx-external-data", Severity.MALICIOUS, reason, member=member)
            return
        if self.base is None:
            return
        path = self.base / loc
        try:
            if path.is_symlink() or any(p.is_symlink() for p in path.parents if self.base in p.parents):
                reason = f"external_data location {loc!r} is a symbolic link"
                ctx.add("onnx-external-data", Severity.MALICIOUS, reason, member=member)
            elif path.exists():
                st = path.stat()
                real = Path(os.path.realpath(path))
                if not real.is_relative_to(Path(os.path.realpath(self.base))):
                    ctx.add("onnx-external-data", Severity.MALICIOUS, f"{loc!r} resolves outside", member=member)
                elif st.st_nlink > 1:
                    reason = f"external_data file {loc!r} has {st.st_nlink} hard links"
                    ctx.add("onnx-external-data", Severity.SUSPICIOUS, reason, member=member)
        except OSError as e:
            ctx.add("onnx-external-data", Severity.INFO, f"cannot check {loc!r}: {e}", member=member, inconclusive=True)


def scan(ctx: Context, buf: Any, start: int, end: int, *, member: str | None) -> None:
    """Check every tensor's external data location in the model's graph, subgraphs and functions."""
    walk = _Walk(ctx, buf, member)
    try:
        for number, wire, value in fields(buf, start, end):
            if number == 7 and wire == 2:  # graph
                walk.graph(value, 0)
            elif number == 25 and wire == 2:  # functions: FunctionProto.node = 7
                for f_num, f_wire, f_val in fields(buf, *value):
                    if f_num == 7 and f_wire == 2:
                        walk.node(f_val, 1)
    except ProtobufError as e:
        ctx.add("onnx-invalid", Severity.INFO, f"invalid ONNX protobuf: {e}", member=member, inconclusive=True)
