"""TensorFlow SavedModel graphs (``saved_model.pb``): ops that read or write files or run Python.

Walks ``SavedModel.meta_graphs[].graph_def`` nodes and its function library with the wire-format reader.
"""

from __future__ import annotations

from typing import Any

from openckpt.scan.formats.protobuf import ProtobufError, fields, text
from openckpt.scan.limits import Context
from openckpt.scan.verdict import Severity

__all__ = ["DANGEROUS_OPS", "scan"]

DANGEROUS_OPS = {
    "ReadFile": "reads any file",
    "WriteFile": "writes any file",
    "MatchingFiles": "lists files",
    "PyFunc": "runs Python",
    "PyFuncStateless": "runs Python",
    "EagerPyFunc": "runs Python",
}


def _node(ctx: Context, buf: Any, span: tuple[int, int], member: str | None) -> None:
    for number, wire, value in fields(buf, *span):
        if number == 2 and wire == 2:
            op = text(buf, value)
            if op in DANGEROUS_OPS:
                reason = f"TensorFlow op {op} {DANGEROUS_OPS[op]}"
                ctx.add("savedmodel-op", Severity.MALICIOUS, reason, member=member, offset=value[0], callable=op)


def _graph(ctx: Context, buf: Any, span: tuple[int, int], member: str | None) -> None:
    for number, wire, value in fields(buf, *span):
        if number == 1 and wire == 2:
            _node(ctx, buf, value, member)
        elif number == 2 and wire == 2:  # library
            for f_num, f_wire, f_val in fields(buf, *value):
                if f_num == 1 and f_wire == 2:  # function
                    for d_num, d_wire, d_val in fields(buf, *f_val):
                        if d_num == 3 and d_wire == 2:  # node_def
                            _node(ctx, buf, d_val, member)


def scan(ctx: Context, buf: Any, start: int, end: int, *, member: str | None) -> None:
    """Flag dangerous ops in every meta graph."""
    try:
        for number, wire, value in fields(buf, start, end):
            if number == 2 and wire == 2:
                for m_num, m_wire, m_val in fields(buf, *value):
                    if m_num == 2 and m_wire == 2:
                        _graph(ctx, buf, m_val, member)
    except ProtobufError as e:
        ctx.add("savedmodel-invalid", Severity.INFO, f"invalid SavedModel: {e}", member=member, inconclusive=True)
