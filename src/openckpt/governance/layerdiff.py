"""Which layers a derivative changed, and by how much: :func:`layer_changes` groups a weight comparison by layer.

A tensor's layer is its name up to the first numeric component (``model.layers.3.mlp.up_proj.weight`` →
``model.layers.3``), else its module (``transformer.wte.weight`` → ``transformer.wte``). A layer's relative L2 is
‖m - b‖ / ‖b‖ over all its compared tensors together; an adapter's is ‖scale·B·A‖ / ‖W‖ over its adapted modules.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openckpt.governance.provenance import ParentCheck, TensorCheck, Unavailable, verify_lineage

__all__ = ["LayerChange", "layer_changes", "layer_of"]


@dataclass
class LayerChange:
    layer: str
    tensors: int = 0
    changed: int = 0
    missing: int = 0
    added: int = 0
    rel_l2: float | None = None
    """‖m - b‖ / ‖b‖ over the layer's compared tensors (for an adapter, its updates against the base weights)."""
    min_cosine: float | None = None
    _diff_sq: float = 0.0
    _base_sq: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def layer_of(name: str) -> str:
    """The layer a tensor belongs to (see the module docstring)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


def _add(layer: LayerChange, check: TensorCheck) -> None:
    layer.tensors += 1
    if check.status in ("changed", "missing", "added"):
        setattr(layer, check.status, getattr(layer, check.status) + 1)
    if check.rel_l2 is not None and check.base_norm is not None and math.isfinite(check.rel_l2):
        layer._diff_sq += (check.rel_l2 * check.base_norm) ** 2
        layer._base_sq += check.base_norm**2
    if check.cosine is not None and check.informative:
        layer.min_cosine = check.cosine if layer.min_cosine is None else min(layer.min_cosine, check.cosine)


def _layers(parent: ParentCheck) -> list[LayerChange]:
    layers: dict[str, LayerChange] = {}
    for check in parent.tensors:
        _add(layers.setdefault(layer_of(check.name), LayerChange(layer_of(check.name))), check)
    for module in parent.modules:
        name = layer_of(module["module"] + ".weight")
        layer = layers.setdefault(name, LayerChange(name))
        layer.tensors += 1
        update, norm = module.get("rel_update"), module.get("base_norm")
        if update is not None and norm:
            layer.changed += 1
            layer._diff_sq += (update * norm) ** 2
            layer._base_sq += norm**2
    for layer in layers.values():
        if layer._base_sq:
            layer.rel_l2 = math.sqrt(layer._diff_sq / layer._base_sq)
    return list(layers.values())


def layer_changes(base: Path, model: Path) -> tuple[ParentCheck, list[LayerChange]]:
    """The comparison of ``model`` with ``base`` (as :func:`verify_lineage` makes it) and its changes by layer."""
    bases: dict[str, Path | Unavailable] = {str(base): base}
    parent = verify_lineage(model, bases, relation=None).parents[0]
    return parent, _layers(parent)
