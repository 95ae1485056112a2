"""Helpers for CLI tests: tiny torch models and the ``invoke`` callable's type."""

from __future__ import annotations

from collections.abc import Callable

import torch
from click.testing import Result

__all__ = ["Invoke", "flip_byte", "tiny_model"]

Invoke = Callable[..., Result]


def tiny_model(seed: int = 0, hidden: int = 8) -> torch.nn.Module:
    """A 4 → hidden → 2 MLP with seeded weights."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2))


def flip_byte(path: object, offset: int = -1) -> None:
    """Invert one byte of a file in place (default: the last one)."""
    from pathlib import Path

    data = bytearray(Path(str(path)).read_bytes())
    data[offset] ^= 0xFF
    Path(str(path)).write_bytes(bytes(data))
