"""How close one tensor is to another: the sums behind cosine similarity and relative L2, streamed in chunks.

Both tensors are read whole by the caller (one pair at a time); the arithmetic runs chunk by chunk in float64, so
tensors of different dtypes (a bfloat16 copy of a float32 weight) compare by value and temporaries stay small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["CHUNK", "Similarity", "similarity"]

CHUNK = 1 << 22
"""Elements converted to float64 at a time."""


@dataclass(frozen=True)
class Similarity:
    """Sums over the elements of a reference ``ref`` and another tensor ``x`` of the same number of elements."""

    numel: int
    dot: float
    ref_sq: float
    x_sq: float
    diff_sq: float
    max_abs: float
    constant_ref: bool
    """Every element of ``ref`` is the same value (an initial LayerNorm weight or bias): it tells no model apart."""
    equal: bool
    """Same values element by element (after conversion to float64)."""

    @property
    def cosine(self) -> float | None:
        """⟨ref, x⟩ / (‖ref‖ ‖x‖); None when either is all zeros."""
        if self.ref_sq == 0 or self.x_sq == 0:
            return None
        return max(-1.0, min(1.0, self.dot / math.sqrt(self.ref_sq * self.x_sq)))

    @property
    def rel_l2(self) -> float:
        """‖x - ref‖ / ‖ref‖ (0 when equal, inf when ref is all zeros and x is not)."""
        if self.ref_sq == 0:
            return 0.0 if self.diff_sq == 0 else math.inf
        return math.sqrt(self.diff_sq / self.ref_sq)


def similarity(ref: torch.Tensor, x: torch.Tensor) -> Similarity:
    """The sums of :class:`Similarity` for two tensors of the same number of elements, in float64 by chunks."""
    import torch

    a, b = ref.reshape(-1), x.reshape(-1)
    if a.numel() != b.numel():
        raise ValueError(f"tensors of {a.numel()} and {b.numel()} elements")
    dot = ref_sq = x_sq = diff_sq = max_abs = 0.0
    first: float | None = None
    constant = True
    for i in range(0, a.numel(), CHUNK):
        ca, cb = a[i : i + CHUNK].to(torch.float64), b[i : i + CHUNK].to(torch.float64)
        d = cb - ca
        dot += float(torch.dot(ca, cb))
        ref_sq += float(torch.dot(ca, ca))
        x_sq += float(torch.dot(cb, cb))
        diff_sq += float(torch.dot(d, d))
        max_abs = max(max_abs, float(d.abs().max()))
        if constant:
            first = float(ca[0]) if first is None else first
            constant = bool((ca == first).all())
    return Similarity(a.numel(), dot, ref_sq, x_sq, diff_sq, max_abs, constant, diff_sq == 0 and max_abs == 0)
