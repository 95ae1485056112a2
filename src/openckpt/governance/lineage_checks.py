"""What a lineage check records: its thresholds, each tensor's and each declared parent's result, and how a base's
tensor names align with a model's. Shared by :mod:`.provenance` (weights) and :mod:`.adapters` (PEFT adapters)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["THRESHOLDS", "ParentCheck", "Status", "TensorCheck", "Thresholds", "Unavailable", "Verdict", "align_names"]

Verdict = Literal["consistent", "not_derived", "unverifiable"]
Status = Literal["identical", "changed", "missing", "added"]


@dataclass(frozen=True)
class Thresholds:
    related_cosine: float = 0.2
    """A model tensor is *related* to the base's when their cosine similarity is at least this."""
    min_related: float = 0.5
    """Share of the base's informative parameters that must be related for ``consistent``."""
    quantized_rel_l2: float = 0.05
    """A quantization should change no tensor by more than this relative L2 (more is noted, not refused)."""


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Unavailable:
    """A declared base that could not be read, and why (absent, private, gated, unreachable, external)."""

    reason: str


@dataclass(frozen=True)
class TensorCheck:
    """Tensor ``name`` of the base against the model's; ``dtype``/``shape`` are the model's (the base's if missing)."""

    name: str
    status: Status
    dtype: str
    shape: list[int]
    numel: int
    base_dtype: str | None = None
    informative: bool = True
    cosine: float | None = None
    rel_l2: float | None = None
    max_abs: float | None = None
    base_norm: float | None = None
    """‖b‖ of the base's tensor (of the rows compared)."""
    model_name: str | None = None
    """The model's name for the tensor when it differs (a model saved with or without a prefix)."""
    note: str | None = None


@dataclass(frozen=True)
class ParentCheck:
    """One declared parent: its verdict, why, the figures behind it and the per-tensor (or per-module) table."""

    base: str
    verdict: Verdict
    reason: str
    method: Literal["weights", "adapter", "none"] = "weights"
    summary: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorCheck] = field(default_factory=list)
    modules: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tensors"] = [asdict(t) for t in self.tensors]
        return out


def align_names(base: list[str], model: list[str]) -> dict[str, str]:
    """Base tensor name → the model's name for it: the same name, else the name under the one prefix added or
    removed that matches most (``transformer.h.0...`` against ``h.0...``)."""
    present = set(model)
    aligned = {n: n for n in base if n in present}
    rest = [n for n in base if n not in present]
    if not rest:
        return aligned
    tops = {m.split(".", 1)[0] + "." for m in model} | {n.split(".", 1)[0] + "." for n in rest}
    best: dict[str, str] = {}
    for prefix in tops:
        added = {n: prefix + n for n in rest if prefix + n in present}
        removed = {n: n[len(prefix) :] for n in rest if n.startswith(prefix) and n[len(prefix) :] in present}
        for candidate in (added, removed):
            if len(candidate) > len(best):
                best = candidate
    taken = set(aligned.values())
    aligned.update({n: m for n, m in best.items() if m not in taken})
    return aligned
