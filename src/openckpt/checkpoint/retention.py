"""Retention policies: which committed checkpoints a :class:`CheckpointManager` keeps.

A checkpoint survives if any policy keeps it. The newest committed checkpoint and one being written are never
deleted, whatever the policies say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

__all__ = ["CheckpointInfo", "KeepPolicy", "keep_best", "keep_every", "keep_last", "to_delete"]


@dataclass(frozen=True)
class CheckpointInfo:
    """A committed checkpoint of a manager's directory."""

    path: Path
    step: int
    metrics: dict[str, float] = field(default_factory=dict)


class KeepPolicy(Protocol):
    def keep(self, checkpoints: Sequence[CheckpointInfo]) -> set[int]:
        """Steps to keep among ``checkpoints`` (sorted by step)."""
        ...


@dataclass(frozen=True)
class _KeepLast:
    n: int

    def keep(self, checkpoints: Sequence[CheckpointInfo]) -> set[int]:
        return {c.step for c in checkpoints[-self.n :]} if self.n > 0 else set()


@dataclass(frozen=True)
class _KeepBest:
    k: int
    metric: str
    mode: Literal["min", "max"]

    def keep(self, checkpoints: Sequence[CheckpointInfo]) -> set[int]:
        scored = [c for c in checkpoints if self.metric in c.metrics and not math.isnan(c.metrics[self.metric])]
        scored.sort(key=lambda c: c.metrics[self.metric], reverse=self.mode == "max")
        return {c.step for c in scored[: self.k]}


@dataclass(frozen=True)
class _KeepEvery:
    steps: int

    def keep(self, checkpoints: Sequence[CheckpointInfo]) -> set[int]:
        return {c.step for c in checkpoints if c.step % self.steps == 0}


def keep_last(n: int) -> KeepPolicy:
    """Keep the ``n`` most recent checkpoints."""
    if n < 1:
        raise ValueError("keep_last needs n >= 1")
    return _KeepLast(n)


def keep_best(k: int, metric: str, mode: Literal["min", "max"] = "min") -> KeepPolicy:
    """Keep the ``k`` checkpoints with the best value of ``metric`` (lowest for ``min``, highest for ``max``)."""
    if k < 1 or mode not in ("min", "max"):
        raise ValueError("keep_best needs k >= 1 and mode 'min' or 'max'")
    return _KeepBest(k, metric, mode)


def keep_every(steps: int) -> KeepPolicy:
    """Keep every checkpoint whose step is a multiple of ``steps`` (permanent milestones)."""
    if steps < 1:
        raise ValueError("keep_every needs steps >= 1")
    return _KeepEvery(steps)


def to_delete(checkpoints: Sequence[CheckpointInfo], policies: Sequence[KeepPolicy]) -> list[CheckpointInfo]:
    """Checkpoints no policy keeps; never the newest. No policies means keep everything."""
    if not policies or not checkpoints:
        return []
    ordered = sorted(checkpoints, key=lambda c: c.step)
    kept = {ordered[-1].step}
    for policy in policies:
        kept |= policy.keep(ordered)
    return [c for c in ordered if c.step not in kept]
