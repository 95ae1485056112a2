"""Nested checkpoint objects (``{"state_dict": {...}, "epoch": 3}``) → flat tensors, JSON values and notes.

The weights are the value of the first wrapper key holding tensors (``state_dict``, ``model`` ...), else the
whole object. Containers inside them are flattened with dotted keys (``encoder.0.weight``). Non-tensor values
are kept if JSON can represent them; tensors outside the weights (optimizer state) are dropped, with a note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError

if TYPE_CHECKING:
    import torch

__all__ = ["WRAPPER_KEYS", "Split", "split_nested"]

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")


@dataclass
class Split:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _children(node: Any) -> list[tuple[Any, Any]] | None:
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, list | tuple):
        return list(enumerate(node))
    return None


def _count_tensors(node: Any) -> int:
    import torch

    if isinstance(node, torch.Tensor):
        return 1
    return sum(_count_tensors(v) for _, v in _children(node) or ())


def _json(value: Any) -> Any:
    """``value`` as plain JSON data; raise ``TypeError`` if JSON cannot represent it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"non-finite float {value}")
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str | int) and not isinstance(k, bool) for k in value):
            raise TypeError("mapping with keys that are not strings")
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    raise TypeError(type(value).__qualname__)


def _unwrap(obj: Any) -> tuple[Any, Mapping[Any, Any], str | None]:
    """The weights (the first wrapper key's value holding tensors, else ``obj``), the rest, and the key used."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and _count_tensors(inner):
                return inner, {k: v for k, v in obj.items() if k != key}, key
    return obj, {}, None


def _keep(out: Split, key: str, value: Any) -> None:
    """Record ``value`` under ``key`` as JSON, or note why it was dropped."""
    try:
        out.values[key] = _json(value)
    except TypeError as e:
        out.notes.append(f"dropped {key!r}: not representable as JSON ({e})")


def _walk(out: Split, node: Any, prefix: str, *, root_name: str) -> None:
    """Flatten the weights ``node`` into ``out``: tensors by dotted name, tensor-free subtrees as JSON values."""
    import torch

    if isinstance(node, torch.Tensor):
        name = prefix or root_name
        if name in out.tensors:
            raise FormatError(f"two tensors flatten to the same name {name!r}")
        out.tensors[name] = node
        return
    children = _children(node)
    if children is None or (prefix and not _count_tensors(node)):
        _keep(out, prefix or root_name, node)
        return
    for k, v in children:
        if not isinstance(k, str | int) or isinstance(k, bool):
            out.notes.append(f"dropped an item of {prefix or '<root>'!r}: key {k!r} is not a string")
            continue
        _walk(out, v, f"{prefix}.{k}" if prefix else str(k), root_name=root_name)


def split_nested(obj: Any, *, root_name: str = "tensor") -> Split:
    """Split a weights-only-loaded object; a bare tensor is named ``root_name``."""
    out = Split()
    weights, rest, wrapper = _unwrap(obj)
    if wrapper is not None:
        out.notes.append(f"weights taken from {wrapper!r}")
    _walk(out, weights, "", root_name=root_name)
    for k, v in rest.items():
        if n := _count_tensors(v):
            out.notes.append(f"dropped {k!r}: {n} tensor{'s' * (n != 1)} outside the model weights")
        else:
            _keep(out, str(k), v)
    return out
