"""Symbolic values on the machine's stack: what an unpickler would hold, without creating any of it."""

from __future__ import annotations

from typing import Any

__all__ = ["Call", "DictV", "Global", "Opaque", "PersId", "Raw", "SetV", "as_bytes", "lookup"]


class Global:
    """An object imported by GLOBAL, INST or STACK_GLOBAL: canonical module and (possibly dotted) qualname."""

    __slots__ = ("allowed", "module", "name", "offset", "special")

    def __init__(self, module: str, name: str, offset: int, allowed: bool) -> None:
        self.module, self.name, self.offset, self.allowed = module, name, offset, allowed
        self.special = False

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return f"Global({self.qualname})"


class Call:
    """The result of calling ``func`` (REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX); BUILD stores its state here."""

    __slots__ = ("args", "func", "kind", "offset", "state")

    def __init__(self, func: Any, args: Any, kind: str, offset: int) -> None:
        self.func, self.args, self.kind, self.offset = func, args, kind, offset
        self.state: Any = None

    def __repr__(self) -> str:
        return f"Call({self.func!r}, {self.kind})"


class Raw:
    """A bytes literal, kept as a span of the scanned buffer (never copied unless needed)."""

    __slots__ = ("length", "start")

    def __init__(self, start: int, length: int) -> None:
        self.start, self.length = start, length


class PersId:
    """The result of ``persistent_load(pid)``."""

    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid


class DictV:
    """A dict as key/value pairs (keys may be unhashable symbolic values)."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any]] = []


class SetV:
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Any] = []


class Opaque:
    """A value the machine does not model (an out-of-band buffer, an extension code's object)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


def as_bytes(value: Any, buf: Any) -> bytes | None:
    """The bytes a literal stands for, or ``None`` if it is not a bytes literal."""
    if isinstance(value, Raw):
        return bytes(buf[value.start : value.start + value.length])
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return None


def lookup(value: Any, key: str) -> Any:
    """``value[key]`` for a symbolic dict with a str key; ``None`` if absent."""
    if isinstance(value, DictV):
        for k, v in value.items:
            if k == key:
                return v
    return None
