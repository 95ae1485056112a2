"""joblib files: pickles with array bytes written between opcodes, read back by ``NumpyArrayWrapper``.

joblib's unpickler, after BUILD of a ``NumpyArrayWrapper``, reads the array from the stream: for object dtypes
a nested pickle stream, else an optional alignment padding (one length byte, then that many bytes) and
``prod(shape) * itemsize`` raw bytes. The machine calls :class:`JoblibArrays` at every BUILD to follow it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from openckpt.scan.pickle.semantics import Semantics
from openckpt.scan.pickle.streams import scan_streams
from openckpt.scan.pickle.values import Call, Global, lookup
from openckpt.scan.verdict import Severity

__all__ = ["JoblibArrays"]

WRAPPERS = frozenset(
    {("joblib.numpy_pickle", "NumpyArrayWrapper"), ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper")}
)
_DIGITS = re.compile(r"(\d+)")


def _dtype(value: Any) -> tuple[int, bool] | None:
    """``(itemsize, has_object)`` of a pickled ``numpy.dtype(...)`` call with its BUILD state."""
    if not (
        isinstance(value, Call) and isinstance(value.args, tuple) and value.args and isinstance(value.args[0], str)
    ):
        return None
    kind = value.args[0]
    state = value.state if isinstance(value.state, tuple) else ()
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if kind.startswith("O") or flags & 1:
        return 8, True
    if elsize > 0:
        return elsize, False
    m = _DIGITS.search(kind)
    return (int(m.group(1)), False) if m else None


class JoblibArrays:
    """The BUILD hook that skips (or scans, for object arrays) the data joblib writes after each wrapper."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, machine: Semantics, inst: Call, pos: int, end: int) -> int:
        func = inst.func
        if not (isinstance(func, Global) and (func.module, func.name) in WRAPPERS):
            return pos
        self.seen += 1
        ctx, member = machine.ctx, machine.member
        shape = lookup(inst.state, "shape")
        info = _dtype(lookup(inst.state, "dtype"))
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape) or info is None:
            ctx.add(
                "joblib-array",
                Severity.INFO,
                "array wrapper with an unreadable shape or dtype",
                member=member,
                offset=pos,
                inconclusive=True,
            )
            return end
        itemsize, has_object = info
        if has_object:
            streams = scan_streams(
                ctx,
                machine.buf,
                pos,
                end,
                member=member,
                loader=machine.loader,
                nested=machine.nested,
                on_build=self,
                limit=1,
            )
            return streams[0].end if streams and streams[0].error is None else end
        if any(k == "numpy_array_alignment_bytes" for k, _ in inst.state.items):
            if pos >= end:
                return end
            pos += 1 + machine.buf[pos]
        pos += math.prod(shape) * itemsize
        if pos > end:
            ctx.add("joblib-array", Severity.INFO, "array data runs past the end", member=member, inconclusive=True)
            return end
        return pos
