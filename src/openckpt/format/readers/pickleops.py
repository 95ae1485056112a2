"""Pickle streams read as opcodes, never executed: the globals they name, and a rewrite to protocol 2's opcodes."""

from __future__ import annotations

import pickle
import pickletools
from typing import Any

__all__ = ["pickle_globals", "protocol2"]

_PUSHES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "BINGET", "LONG_BINGET"})
"""Opcodes that push a string (a literal or a memoized one) that ``STACK_GLOBAL`` may consume."""


def pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` of every global a pickle stream names, in order, read without running it.

    Stops quietly where the stream stops parsing (joblib appends raw array bytes after its pickle opcodes).
    """
    names: list[str] = []
    recent: list[str | None] = []
    memo: dict[int, str | None] = {}
    count = 0
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in ("GLOBAL", "STACK_GLOBAL"):
                if name == "GLOBAL" and isinstance(arg, str):
                    names.append(arg.replace(" ", "."))
                elif len(recent) >= 2 and recent[-2] and recent[-1]:
                    names.append(f"{recent[-2]}.{recent[-1]}")
                recent.append(None)
            elif name == "MEMOIZE":
                memo[count] = recent[-1] if recent else None
                count += 1
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(str(arg))] = recent[-1] if recent else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(int(str(arg))))
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"):
                recent.append(str(arg))
            elif name == "STOP":
                break
            elif name != "FRAME":
                recent.append(None)
            del recent[:-4]
    except (ValueError, EOFError, UnicodeDecodeError):
        pass
    return list(dict.fromkeys(n for n in names if n))


def protocol2(data: bytes) -> bytes:
    """A protocol 4/5 pickle rewritten with the opcodes torch's weights-only unpickler reads (protocol 2's).

    Frames are dropped, short strings widened, ``MEMOIZE`` numbered and ``STACK_GLOBAL`` resolved to ``GLOBAL``
    from the two strings it consumes (known statically: literals or memoized literals).
    """
    ops = list(pickletools.genops(data))
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    consumed = _stack_global_operands(ops)
    out = bytearray()
    strings: dict[int, str] = {}
    memo = 0
    last: tuple[int, str] | None = None
    pending: list[str] = []
    skip_memo = False
    for i, (op, arg, pos) in enumerate(ops):
        name = op.name
        value = arg if isinstance(arg, str) else strings.get(int(str(arg))) if name.endswith("BINGET") else None
        if i in consumed:
            if value is None:
                raise ValueError("STACK_GLOBAL of a value that is not a string")
            pending.append(value)
            skip_memo = True
            last = (i, value)
            continue
        if name == "MEMOIZE":
            if not skip_memo:
                out += pickle.LONG_BINPUT + memo.to_bytes(4, "little")
            if last is not None and last[0] == i - 1:
                strings[memo] = last[1]
            memo += 1
            skip_memo = False
            continue
        skip_memo = False
        if name == "FRAME":
            continue
        if name == "STACK_GLOBAL":
            module, attr = pending[-2], pending[-1]
            del pending[-2:]
            out += pickle.GLOBAL + f"{module}\n{attr}\n".encode()
        else:
            out += _protocol2_op(name, arg, data[pos : ends[i]])
        if name in ("BINPUT", "LONG_BINPUT") and last is not None and last[0] == i - 1:
            strings[int(str(arg))] = last[1]
        last = (i, value) if value is not None and name in _PUSHES else None
    return bytes(out)


def _stack_global_operands(ops: list[tuple[pickletools.OpcodeInfo, Any, int | None]]) -> set[int]:
    """Indexes of the string pushes each ``STACK_GLOBAL`` consumes: the nearest two among the 7 ops before it."""
    consumed: set[int] = set()
    for i, (op, _, _) in enumerate(ops):
        if op.name == "STACK_GLOBAL":
            found = [j for j in range(i - 1, max(i - 8, -1), -1) if ops[j][0].name in _PUSHES][:2]
            if len(found) != 2:
                raise ValueError("STACK_GLOBAL without two strings before it")
            consumed.update(found)
    return consumed


def _protocol2_op(name: str, arg: Any, raw: bytes) -> bytes:
    """One opcode (``raw``, its bytes) as protocol 2 writes it: ``PROTO 2``, short strings widened, else as is."""
    if name == "PROTO":
        return pickle.PROTO + b"\x02"
    if name in ("SHORT_BINUNICODE", "BINUNICODE8"):
        text = str(arg).encode("utf-8", "surrogatepass")
        return pickle.BINUNICODE + len(text).to_bytes(4, "little") + text
    return raw
