"""What the machine's imports and calls mean: allowlist decisions, computed values, nested payloads, findings.

:class:`Semantics` is the half of the unpickler that is not the opcode loop: :class:`.machine.Machine` adds that.
Findings are buffered per stream, so a probe (bytes that may not be a pickle at all) can drop them.
"""

from __future__ import annotations

import base64
import binascii
import codecs
from collections.abc import Callable
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.pickle.globals import LOADER_GADGETS, canonical, classify, weights_only
from openckpt.scan.pickle.values import Call, Global, Opaque, PersId, Raw, as_bytes
from openckpt.scan.verdict import Severity

__all__ = ["DYNAMIC", "MIN_NESTED", "PICKLE_MAGIC", "Nested", "PickleError", "Semantics"]

Nested = Callable[[Any, int, int, str, bool], None]
"""``nested(buf, start, end, label, probe)``: scan ``buf[start:end]`` as a file of its own (``probe``: only if
it turns out to be a pickle)."""

MIN_NESTED = 8
PICKLE_MAGIC = frozenset({b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"})


class PickleError(Exception):
    """The real unpickler would raise here; the stream ends."""


class Semantics:
    """Imports, calls, BUILD and container mutation of one scanner, with its buffered findings."""

    def __init__(
        self,
        ctx: Context,
        buf: Any,
        *,
        member: str | None,
        loader: str,
        nested: Nested | None = None,
        probe: bool = False,
        on_build: Callable[[Semantics, Call, int, int], int] | None = None,
    ) -> None:
        self.ctx, self.buf, self.member, self.loader = ctx, buf, member, loader
        self.nested, self.probe, self.on_build = nested, probe, on_build
        self._pending: list[tuple[str, Severity, str, int | None, str | None, bool]] = []
        self._blobs: list[tuple[int, int, str]] = []
        self._seen_globals: dict[tuple[str, str], Global] = {}
        self._fed: set[int] = set()
        self._extension = False

    # -- findings ---------------------------------------------------------------------------------------------
    def note(
        self,
        rule: str,
        severity: Severity,
        reason: str,
        offset: int | None,
        what: str | None = None,
        partial: bool = False,
    ) -> None:
        self._pending.append((rule, severity, reason, offset, what, partial))

    def _flush(self, keep: bool) -> None:
        if keep:
            for rule, severity, reason, offset, what, partial in self._pending:
                if rule == "pickle-global" and what:
                    self.ctx.imports.add(what)
                self.ctx.add(
                    rule, severity, reason, member=self.member, offset=offset, callable=what, inconclusive=partial
                )
        self._pending.clear()

    # -- names and calls --------------------------------------------------------------------------------------
    def _global(self, module: str, name: str, offset: int) -> Global:
        if self.probe and not all(p.isidentifier() for p in f"{module}.{name}".split(".")):
            raise PickleError(f"no importable name {module!r}, {name!r}")
        module, name = canonical(module, name)
        known = self._seen_globals.get((module, name))
        if known is not None:
            return known
        decision = classify(module, name, self.loader)
        g = Global(module, name, offset, decision is None)
        g.special = (module, name) in _SPECIAL
        self._seen_globals[(module, name)] = g
        if decision is not None:
            severity, reason = decision
            self.note("pickle-global", severity, f"imports {reason}", offset, g.qualname)
        elif self.loader == "torch" and not weights_only(module, name):
            why = f"torch.load(weights_only=True) refuses {g.qualname} (allowed data class, full unpickling only)"
            self.note("pickle-not-weights-only", Severity.INFO, why, offset, g.qualname)
        return g

    def _call(self, func: Any, args: Any, kind: str, offset: int) -> Any:
        if func.__class__ is Global and not func.special:
            return Call(func, args, kind, offset)
        if isinstance(func, Global):
            key = (func.module, func.name)
            if key == ("_codecs", "encode") and isinstance(args, tuple) and args and isinstance(args[0], str):
                encoding = args[1] if len(args) > 1 and isinstance(args[1], str) else "utf-8"
                try:
                    return codecs.encode(args[0], encoding) if encoding in ("latin1", "latin-1", "utf-8") else None
                except (UnicodeError, LookupError):
                    return None
            if key in LOADER_GADGETS and isinstance(args, tuple) and args:
                self._payload(args[0], func.qualname, offset)
            if key in (("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")):
                cls = args[0] if isinstance(args, tuple) and args else None
                if not isinstance(cls, Global):
                    self.note("pickle-call", Severity.MALICIOUS, f"{func.qualname} of a computed class", offset)
        elif isinstance(func, PersId):
            self.note("pickle-call", Severity.SUSPICIOUS, f"{kind} calls a persistent object", offset)
        else:
            what = getattr(getattr(func, "func", None), "qualname", None)
            reason = f"{kind} calls a computed object" + (f" (result of {what})" if what else "")
            self.note("pickle-call", Severity.MALICIOUS, reason, offset, what)
        return Call(func, args, kind, offset)

    def _payload(self, arg: Any, gadget: str, offset: int) -> None:
        data = as_bytes(arg, self.buf)
        if data is None and isinstance(arg, str):
            data = arg.encode("latin-1", "replace")
        if data is not None and self.nested is not None:
            start = arg.start if isinstance(arg, Raw) else 0
            if isinstance(arg, Raw):
                self._fed.add(start)
            buf = self.buf if isinstance(arg, Raw) else data
            self.nested(buf, start, start + len(data), f"{gadget}@{offset}", False)

    def _literal(self, value: str, start: int) -> str:
        """Remember strings that look like base64 or hex-encoded pickles."""
        if len(value) >= 2 * MIN_NESTED and (value.startswith("gA") or value[:2] == "80"):
            self._blobs.append((start, -1, value))
        return value

    # -- the stream -------------------------------------------------------------------------------------------
    def _scan_blobs(self) -> None:
        blobs, self._blobs = self._blobs, []
        if self.nested is None:
            return
        for start, length, text in blobs:
            if start in self._fed:
                continue
            if length >= 0:
                self.nested(self.buf, start, start + length, f"embedded bytes@{start}", True)
                continue
            data = _decode_text(text)
            if data is not None:
                self.nested(data, 0, len(data), f"encoded string@{start}", True)

    def _mutate(self, target: Any, what: str, offset: int) -> None:
        """SETITEM/APPEND/ADDITEMS on something that is not a plain container calls its methods."""
        if isinstance(target, Global):
            reason = f"{what} on the imported object {target.qualname} (calls its methods)"
            self.note("pickle-call", Severity.MALICIOUS, reason, offset, target.qualname)
        elif not isinstance(target, Call):
            self.note("pickle-call", Severity.SUSPICIOUS, f"{what} on a {type(target).__name__}", offset)

    def _build(self, inst: Any, state: Any, offset: int, pos: int, end: int) -> int:
        if isinstance(inst, Global):
            reason = f"BUILD sets attributes of the imported object {inst.qualname}"
            self.note("pickle-build", Severity.MALICIOUS, reason, offset, inst.qualname)
        elif isinstance(inst, Call):
            inst.state = state
            if self.on_build is not None:
                return self.on_build(self, inst, pos, end)
        elif isinstance(inst, (PersId, Opaque)):
            self.note("pickle-build", Severity.SUSPICIOUS, "BUILD on a persistent or external object", offset)
        return pos


DYNAMIC = (Global, Call, PersId, Opaque)
_SPECIAL = LOADER_GADGETS | {
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"),
}


def _decode_text(text: str) -> bytes | None:
    """The bytes of a base64 or hex string that encodes a pickle, else ``None``."""
    try:
        hexed = text[:2] == "80"
        data = binascii.unhexlify(text.strip()) if hexed else base64.b64decode(text.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None
    return data if data[:2] in PICKLE_MAGIC else None
