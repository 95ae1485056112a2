"""A symbolic unpickler following ``Modules/_pickle.c``: it walks every opcode, imports and calls nothing.

It keeps the C unpickler's stack, mark stack and memo with symbolic values (:mod:`.values`), so names built
through the memo, dotted STACK_GLOBAL names, and calls through REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX and BUILD are
all seen. FRAME is handled as the C unpickler does (a length to check, not a boundary) and any place where
``pickle.py`` and ``_pickle.c`` would disagree is reported. Every import off the loader's allowlist is a finding.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field
from typing import Any

from openckpt.scan.limits import LimitError
from openckpt.scan.pickle import opcodes as op
from openckpt.scan.pickle.semantics import DYNAMIC, MIN_NESTED, PICKLE_MAGIC, Nested, PickleError, Semantics
from openckpt.scan.pickle.values import DictV, Opaque, PersId, Raw, SetV
from openckpt.scan.verdict import Severity

__all__ = ["Machine", "Nested", "Stream"]

_U2, _I4, _U4, _U8, _F8 = (struct.Struct(f) for f in ("<H", "<i", "<I", "<Q", ">d"))


@dataclass
class Stream:
    """One pickle stream: where it starts and ends, its top value, and why it stopped early (``error``)."""

    start: int
    end: int
    value: Any = None
    error: str | None = None
    persids: list[Any] = field(default_factory=list)
    globals_seen: int = 0


class Machine(Semantics):
    """Scans pickle streams of ``buf`` (bytes or mmap) for one loader; findings go to ``ctx``.

    ``probe`` mode is for bytes that may or may not be a pickle (embedded blobs): findings are kept only if the
    stream completes or imported something.
    """

    first = True
    """Whether this is the first stream of its data: a loader stopping in a later one has run the earlier ones."""

    def stream(self, pos: int, end: int) -> Stream:
        """Scan one stream from ``pos``; stops after STOP, at the first error, or at a limit."""
        result = Stream(pos, pos)
        try:
            self._run(result, pos, end)
        except PickleError as e:
            result.error = str(e)
        except LimitError:
            result.error = "limit reached"
        imported = bool(self._seen_globals)
        inert = (
            self.first
            and not imported
            and not self._extension
            and all(isinstance(pid, str) for pid in result.persids)
            and result.error != "limit reached"
        )
        if inert:
            # the first stream stops before any import, extension or structured persistent id (a text id fails in
            # every loader's persistent_load): the loader raises, nothing from this data ran
            self._pending = [
                (rule, Severity.OPAQUE, reason, offset, what, False) if rule == "pickle-frame-overrun" else note
                for note in self._pending
                for rule, _, reason, offset, what, _ in [note]
            ]
        if result.error is not None and not (self.probe and not imported):
            partial = result.error != "limit reached"
            reason = f"pickle stream at offset {result.start} stops at offset {result.end}: {result.error}"
            if inert:
                reason += " (before importing anything: no loader runs code from it)"
            severity = Severity.OPAQUE if inert else Severity.INFO
            self.note("pickle-invalid", severity, reason, result.end, None, partial and not inert)
        self._flush(keep=not self.probe or result.error is None or imported)
        result.globals_seen = len(self._seen_globals)
        self._seen_globals.clear()
        self._scan_blobs()
        return result

    def _run(self, result: Stream, pos: int, end: int) -> None:  # noqa: C901 — _pickle.c's one loop: ops share stack+memo
        """Walk the opcodes from ``pos`` until STOP, as ``load()`` in ``_pickle.c`` does, on symbolic values."""
        buf, ctx, limits = self.buf, self.ctx, self.ctx.limits
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}
        push = stack.append
        frame_end = -1
        count = 0
        max_ops, max_memo, max_stack = limits.max_opcodes, limits.max_memo, limits.max_stack

        def pop_mark() -> list[Any]:
            if not marks:
                raise PickleError("MARK expected but not found")
            m = marks.pop()
            items = stack[m:]
            del stack[m:]
            return items

        def pop() -> Any:
            if len(stack) <= (marks[-1] if marks else 0):
                raise PickleError("unpickling stack underflow")
            return stack.pop()

        def line(p: int) -> tuple[bytes, int]:
            nl = buf.find(b"\n", p, end)
            if nl < 0:
                raise PickleError("pickle data was truncated (no newline)")
            return bytes(buf[p:nl]), nl + 1

        def need(p: int, n: int) -> None:
            if n < 0 or p + n > end:
                raise PickleError("pickle data was truncated")

        def text(raw: bytes) -> str:
            try:
                return raw.decode("utf-8", "strict")
            except UnicodeDecodeError as e:
                raise PickleError(f"invalid UTF-8 in a name: {e.reason}") from None

        start = pos
        try:
            while True:
                if pos >= end:
                    start = pos
                    raise PickleError("pickle data was truncated (no STOP)")
                code = buf[pos]
                start = pos
                pos += 1
                count += 1
                if not count & 0xFFFF:
                    if count > max_ops:
                        raise ctx.limit(f"more than {max_ops} opcodes in one pickle", member=self.member, offset=start)
                    ctx.check_time(self.member)
                    if len(memo) > max_memo:
                        raise ctx.limit(f"more than {max_memo} memo entries", member=self.member, offset=start)
                    if len(stack) > max_stack or len(marks) > max_stack:
                        raise ctx.limit(f"stack deeper than {max_stack}", member=self.member, offset=start)
                if code == op.LONG_BINPUT:
                    if pos + 4 > end:
                        raise PickleError("pickle data was truncated")
                    memo[_U4.unpack_from(buf, pos)[0]] = stack[-1]
                    pos += 4
                elif code == op.BINGET:
                    if pos >= end:
                        raise PickleError("pickle data was truncated")
                    try:
                        push(memo[buf[pos]])
                    except KeyError:
                        raise PickleError(f"memo value not found at index {buf[pos]}") from None
                    pos += 1
                elif code == op.BININT1:
                    if pos >= end:
                        raise PickleError("pickle data was truncated")
                    push(buf[pos])
                    pos += 1
                elif code == op.MEMOIZE:
                    memo[len(memo)] = stack[-1]
                elif code == op.MARK:
                    marks.append(len(stack))
                elif code == op.BINUNICODE or code == op.SHORT_BINUNICODE or code == op.BINUNICODE8:
                    if code == op.SHORT_BINUNICODE:
                        if pos >= end:
                            raise PickleError("pickle data was truncated")
                        n = buf[pos]
                        pos += 1
                    else:
                        n_len = 4 if code == op.BINUNICODE else 8
                        need(pos, n_len)
                        n = (_U4 if n_len == 4 else _U8).unpack_from(buf, pos)[0]
                        pos += n_len
                    if pos + n > end:
                        raise PickleError("pickle data was truncated")
                    try:
                        s = buf[pos : pos + n].decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError as e:
                        raise PickleError(f"invalid UTF-8 string: {e.reason}") from None
                    push(self._literal(s, pos) if n >= 2 * MIN_NESTED else s)
                    pos += n
                elif code == op.BINPUT:
                    if pos >= end:
                        raise PickleError("pickle data was truncated")
                    memo[buf[pos]] = stack[-1]
                    pos += 1
                elif code == op.TUPLE:
                    if not marks:
                        raise PickleError("MARK expected but not found")
                    m = marks.pop()
                    t = tuple(stack[m:])
                    del stack[m:]
                    push(t)
                elif code == op.TUPLE1 or code == op.TUPLE2 or code == op.TUPLE3:
                    k = code - 0x84
                    if len(stack) - (marks[-1] if marks else 0) < k:
                        raise PickleError("unpickling stack underflow")
                    t = tuple(stack[-k:])
                    del stack[-k:]
                    push(t)
                elif code == op.REDUCE:
                    if len(stack) - (marks[-1] if marks else 0) < 2:
                        raise PickleError("unpickling stack underflow")
                    args = stack.pop()
                    func = stack.pop()
                    if args.__class__ is not tuple:
                        raise PickleError("REDUCE arguments are not a tuple")
                    push(self._call(func, args, "REDUCE", start))
                elif code == op.NEWFALSE:
                    push(False)
                elif code == op.EMPTY_TUPLE:
                    push(())
                elif code == op.BINPERSID:
                    pid = pop()
                    result.persids.append(pid)
                    push(PersId(pid))
                elif code == op.LONG_BINGET:
                    need(pos, 4)
                    idx = _U4.unpack_from(buf, pos)[0]
                    pos += 4
                    if idx not in memo:
                        raise PickleError(f"memo value not found at index {idx}")
                    push(memo[idx])
                elif code == op.BININT2:
                    need(pos, 2)
                    push(_U2.unpack_from(buf, pos)[0])
                    pos += 2
                elif code == op.BININT:
                    need(pos, 4)
                    push(_I4.unpack_from(buf, pos)[0])
                    pos += 4
                elif code == op.GLOBAL or code == op.INST:
                    raw_mod, pos = line(pos)
                    raw_name, pos = line(pos)
                    g = self._global(text(raw_mod), text(raw_name), start)
                    if code == op.INST:
                        push(self._call(g, tuple(pop_mark()), "INST", start))
                    else:
                        push(g)
                elif code == op.STACK_GLOBAL:
                    name = pop()
                    module = pop()
                    if isinstance(name, str) and isinstance(module, str):
                        push(self._global(module, name, start))
                    elif isinstance(name, DYNAMIC) or isinstance(module, DYNAMIC):
                        reason = "STACK_GLOBAL of a name computed at load time (attribute or call result)"
                        self.note("pickle-global", Severity.MALICIOUS, reason, start)
                        push(Opaque("dynamic global"))
                    else:
                        raise PickleError("STACK_GLOBAL requires str")
                elif code == op.PERSID:
                    raw, pos = line(pos)
                    pid = raw.decode("ascii", "replace")
                    result.persids.append(pid)
                    push(PersId(pid))
                elif code == op.EMPTY_DICT:
                    push(DictV())
                elif code == op.EMPTY_LIST:
                    push([])
                elif code == op.SETITEMS or code == op.SETITEM:
                    if code == op.SETITEM:
                        v = pop()
                        k = pop()
                        items = [k, v]
                    else:
                        items = pop_mark()
                        if len(items) % 2:
                            raise PickleError("odd number of items for SETITEMS")
                    if not stack or len(stack) <= (marks[-1] if marks else 0):
                        raise PickleError("unpickling stack underflow")
                    target = stack[-1]
                    if isinstance(target, DictV):
                        target.items.extend(zip(items[::2], items[1::2], strict=True))
                    else:
                        self._mutate(target, "SETITEM", start)
                elif code == op.APPENDS or code == op.APPEND:
                    items = pop_mark() if code == op.APPENDS else [pop()]
                    if not stack or len(stack) <= (marks[-1] if marks else 0):
                        raise PickleError("unpickling stack underflow")
                    target = stack[-1]
                    if isinstance(target, list):
                        target.extend(items)
                    else:
                        self._mutate(target, "APPEND", start)
                elif code == op.NEWTRUE:
                    push(True)
                elif code == op.NONE:
                    push(None)
                elif code == op.BUILD:
                    state = pop()
                    if not stack or len(stack) <= (marks[-1] if marks else 0):
                        raise PickleError("unpickling stack underflow")
                    moved = self._build(stack[-1], state, start, pos, end)
                    if moved != pos:  # joblib read array bytes from the file itself, outside any frame
                        pos, frame_end = moved, -1
                        continue
                elif code == op.SHORT_BINBYTES or code == op.BINBYTES or code == op.BINBYTES8 or code == op.BYTEARRAY8:
                    n_len = 1 if code == op.SHORT_BINBYTES else (4 if code == op.BINBYTES else 8)
                    need(pos, n_len)
                    n = buf[pos] if n_len == 1 else (_U4 if n_len == 4 else _U8).unpack_from(buf, pos)[0]
                    pos += n_len
                    need(pos, n)
                    if n >= MIN_NESTED and bytes(buf[pos : pos + 2]) in PICKLE_MAGIC:
                        self._blobs.append((pos, n, ""))
                    push(Raw(pos, n))
                    pos += n
                elif code == op.BINFLOAT:
                    need(pos, 8)
                    push(_F8.unpack_from(buf, pos)[0])
                    pos += 8
                elif code == op.LONG1 or code == op.LONG4:
                    n_len = 1 if code == op.LONG1 else 4
                    need(pos, n_len)
                    n = buf[pos] if n_len == 1 else _I4.unpack_from(buf, pos)[0]
                    if n < 0:
                        raise PickleError("LONG pickle has negative byte count")
                    pos += n_len
                    need(pos, n)
                    push(int.from_bytes(buf[pos : pos + n], "little", signed=True) if n <= 64 else 0)
                    pos += n
                elif code == op.FRAME:
                    need(pos, 8)
                    n = _U8.unpack_from(buf, pos)[0]
                    pos += 8
                    if frame_end > start:
                        self.note(
                            "pickle-divergence", Severity.INFO, "FRAME starts inside another frame", start, None, True
                        )
                    frame_end = pos + n
                    if frame_end > end:
                        reason = f"FRAME of {n} bytes runs past the end of the data (the C unpickler stops here)"
                        self.note("pickle-frame-overrun", Severity.INFO, reason, start, None, True)
                    continue
                elif code == op.PROTO:
                    need(pos, 1)
                    if buf[pos] > 5:
                        raise PickleError(f"unsupported pickle protocol: {buf[pos]}")
                    pos += 1
                elif code == op.STOP:
                    result.end = pos
                    result.value = pop()
                    if marks and marks[-1] > len(stack):
                        raise PickleError("MARK left open at STOP")
                    return
                elif code == op.POP:
                    if marks and marks[-1] == len(stack):
                        marks.pop()
                    else:
                        pop()
                elif code == op.POP_MARK:
                    pop_mark()
                elif code == op.DUP:
                    if len(stack) <= (marks[-1] if marks else 0):
                        raise PickleError("unpickling stack underflow")
                    push(stack[-1])
                elif code == op.DICT:
                    items = pop_mark()
                    if len(items) % 2:
                        raise PickleError("odd number of items for DICT")
                    d = DictV()
                    d.items.extend(zip(items[::2], items[1::2], strict=True))
                    push(d)
                elif code == op.LIST:
                    push(pop_mark())
                elif code == op.OBJ:
                    items = pop_mark()
                    if not items:
                        raise PickleError("OBJ without a class")
                    push(self._call(items[0], tuple(items[1:]), "OBJ", start))
                elif code == op.NEWOBJ:
                    args = pop()
                    cls = pop()
                    if not isinstance(args, tuple):
                        raise PickleError("NEWOBJ expected an argument tuple")
                    push(self._call(cls, args, "NEWOBJ", start))
                elif code == op.NEWOBJ_EX:
                    kwargs = pop()
                    args = pop()
                    cls = pop()
                    push(self._call(cls, (args, kwargs), "NEWOBJ_EX", start))
                elif code == op.PUT or code == op.GET:
                    raw, pos = line(pos)
                    try:
                        idx = int(raw)
                    except ValueError:
                        raise PickleError("invalid memo index") from None
                    if code == op.PUT:
                        if idx < 0:
                            raise PickleError("negative PUT argument")
                        if not stack:
                            raise PickleError("stack empty at PUT")
                        memo[idx] = stack[-1]
                    else:
                        if idx not in memo:
                            raise PickleError(f"memo value not found at index {idx}")
                        push(memo[idx])
                elif code == op.INT or code == op.LONG:
                    raw, pos = line(pos)
                    raw = raw.rstrip(b"L") if code == op.LONG else raw
                    try:
                        push(False if raw == b"00" else True if raw == b"01" else int(raw))
                    except ValueError:
                        raise PickleError("invalid INT/LONG literal") from None
                elif code == op.FLOAT:
                    raw, pos = line(pos)
                    try:
                        push(float(raw))
                    except ValueError:
                        raise PickleError("invalid FLOAT literal") from None
                elif code == op.STRING:
                    raw, pos = line(pos)
                    if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b"'", b'"'):
                        raise PickleError("the STRING opcode argument must be quoted")
                    try:
                        value = codecs.escape_decode(raw[1:-1])[0].decode("latin-1")
                    except ValueError:
                        raise PickleError("invalid STRING escape") from None
                    push(self._literal(value, start))
                elif code == op.BINSTRING or code == op.SHORT_BINSTRING:
                    n_len = 1 if code == op.SHORT_BINSTRING else 4
                    need(pos, n_len)
                    n = buf[pos] if n_len == 1 else _I4.unpack_from(buf, pos)[0]
                    pos += n_len
                    need(pos, n)
                    push(self._literal(bytes(buf[pos : pos + n]).decode("latin-1"), pos))
                    pos += n
                elif code == op.UNICODE:
                    raw, pos = line(pos)
                    try:
                        push(self._literal(raw.decode("raw-unicode-escape"), start))
                    except UnicodeDecodeError:
                        raise PickleError("invalid UNICODE literal") from None
                elif code == op.EMPTY_SET:
                    push(SetV())
                elif code == op.ADDITEMS:
                    items = pop_mark()
                    if not stack or len(stack) <= (marks[-1] if marks else 0):
                        raise PickleError("unpickling stack underflow")
                    if isinstance(stack[-1], SetV):
                        stack[-1].items.extend(items)
                    else:
                        self._mutate(stack[-1], "ADDITEMS", start)
                elif code == op.FROZENSET:
                    frozen = SetV()
                    frozen.items.extend(pop_mark())
                    push(frozen)
                elif code == op.EXT1 or code == op.EXT2 or code == op.EXT4:
                    n_len = {op.EXT1: 1, op.EXT2: 2, op.EXT4: 4}[code]
                    need(pos, n_len)
                    pos += n_len
                    # copyreg's registry is empty unless code that already ran filled it (the loader then raises),
                    # so what this imports cannot be known here: inconclusive, not an attempt to mislead
                    reason = "EXT opcode: imports whatever copyreg's extension registry maps the code to"
                    self._extension = True
                    self.note("pickle-global", Severity.NEEDS_CODE, reason, start, None, True)
                    push(Opaque("extension"))
                elif code == op.NEXT_BUFFER:
                    push(Opaque("out-of-band buffer"))
                elif code == op.READONLY_BUFFER:
                    if len(stack) <= (marks[-1] if marks else 0):
                        raise PickleError("unpickling stack underflow")
                else:
                    result.end = start
                    raise PickleError(f"invalid opcode 0x{code:02x}")
                if start < frame_end < pos:
                    reason = f"{op.NAMES.get(code, hex(code))} straddles a frame boundary (pickle.py rejects it)"
                    self.note("pickle-divergence", Severity.INFO, reason, start, None, True)

        except PickleError:
            result.end = start
            raise
        except IndexError:
            result.end = start
            raise PickleError("unpickling stack underflow") from None
        except struct.error:
            result.end = start
            raise PickleError("pickle data was truncated") from None
