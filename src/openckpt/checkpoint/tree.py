"""Nested state ↔ (JSON skeleton, flat tensors): how non-tensor state is stored without pickle.

Tensors and numpy arrays become references into safetensors files, keyed by a JSON-pointer-style path
(``state/model.fc.weight/exp_avg``). Everything else must be JSON-representable; Python types JSON lacks are tagged
so they round-trip exactly: ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}`` (non-string keys),
``{"$float": "nan"}``, ``{"$bytes": "<base64>"}``, ``{"$npscalar": "<dtype>", "value": ...}``.
"""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsupportedStateError

if TYPE_CHECKING:
    import torch

__all__ = ["flatten", "unflatten"]

_JSON_SCALARS = (bool, int, str, type(None))


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _join(prefix: str, key: Any) -> str:
    k = _escape(str(key))
    return f"{prefix}/{k}" if prefix else k


def _numpy_tensor(value: Any, path: str) -> torch.Tensor:
    """A numeric numpy array as a native-byte-order, C-contiguous tensor (0-d shapes kept)."""
    import torch

    if value.dtype.kind not in "biuf":
        raise UnsupportedStateError(f"numpy array of dtype {value.dtype} at {path!r} cannot be stored")
    return torch.from_numpy(value.astype(value.dtype.newbyteorder("="), order="C", copy=False))


def _leaf(value: Any, path: str) -> Any:
    """The JSON form of a value that holds no tensor: a scalar, a tagged non-finite float or tagged bytes."""
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    raise UnsupportedStateError(
        f"value of type {type(value).__qualname__} at {path or '<root>'!r} cannot be stored without pickle; "
        "convert it to tensors, numbers, strings, lists or dicts in state_dict()"
    )


def flatten(obj: Any) -> tuple[Any, dict[str, torch.Tensor], set[str]]:
    """Split ``obj`` into a JSON skeleton, its tensors by path, and the paths that were numpy arrays."""
    import numpy as np
    import torch

    tensors: dict[str, torch.Tensor] = {}
    arrays: set[str] = set()

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value
            return {"$tensor": path}
        if isinstance(value, np.ndarray):
            tensors[path] = _numpy_tensor(value, path)
            arrays.add(path)
            return {"$tensor": path, "numpy": True}
        if isinstance(value, (*_JSON_SCALARS, float)):  # before np.generic: np.float64 is a float, np.str_ a str
            return _leaf(value, path)
        if isinstance(value, np.generic):
            return {"$npscalar": value.dtype.str, "value": walk(value.item(), path)}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: walk(v, _join(path, k)) for k, v in value.items()}
            return {"$dict": [[walk(k, path), walk(v, _join(path, k))] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            items = [walk(v, _join(path, i)) for i, v in enumerate(value)]
            return items if isinstance(value, list) else {"$tuple": items}
        return _leaf(value, path)

    return walk(obj, ""), tensors, arrays


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the object :func:`flatten` split."""
    import numpy as np

    def build(node: Any) -> Any:
        if isinstance(node, list):
            return [build(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "$tensor" in node:
            try:
                t = tensors[node["$tensor"]]
            except KeyError:
                raise FormatError(f"state refers to missing tensor {node['$tensor']!r}") from None
            return t.numpy() if node.get("numpy") else t
        if "$tuple" in node:
            return tuple(build(v) for v in node["$tuple"])
        if "$dict" in node:
            return {build(k): build(v) for k, v in node["$dict"]}
        if "$float" in node:
            return float(node["$float"])
        if "$bytes" in node:
            return base64.b64decode(node["$bytes"])
        if "$npscalar" in node:
            return np.dtype(node["$npscalar"]).type(build(node["value"]))
        return {k: build(v) for k, v in node.items()}

    return build(skeleton)
