"""What every reader offers: a listing of tensors, read one at a time, plus the file's non-tensor metadata."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from openckpt.format.dtypes import ITEMSIZE
from openckpt.format.manifest import Architecture

if TYPE_CHECKING:
    import torch

__all__ = ["FLOAT_DTYPES", "TensorEntry", "TensorSource", "architecture_of"]

FLOAT_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}
"""safetensors float dtype names → torch's names (as the manifest's ``parameters_by_dtype`` uses them)."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as listed by a source; ``dtype`` is a safetensors dtype name (``F32``, ``BF16`` ...)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str | None = None
    """File holding the tensor, relative to the source's directory (None for single-file sources)."""
    blake3: str | None = None
    """blake3 of the tensor's bytes when a manifest records it."""

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE[self.dtype]


class TensorSource(ABC):
    """Read-only view of the tensors stored at ``path``; use as a context manager."""

    kind: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tensors: dict[str, TensorEntry] = {}
        """Name → entry, in storage order."""
        self.metadata: dict[str, str] = {}
        """String metadata stored with the tensors (safetensors ``__metadata__``)."""
        self.config: dict[str, Any] | None = None
        """The model's Hugging Face ``config.json``, if known."""
        self.values: dict[str, Any] = {}
        """JSON-able non-tensor values found next to the tensors (dotted keys), e.g. ``epoch``."""
        self.notes: list[str] = []
        """What the reader dropped or unwrapped, and why."""
        self.layout: str | None = None
        """What wrote the file, when recognised (``Lightning checkpoint``, ``diffusers pipeline`` ...)."""
        self.sections: dict[str, dict[str, Any]] = {}
        """Titled facts of the layout (``Dims``, ``Policy``, ``Hyperparameters`` ...), JSON-able."""
        self.needs_code: dict[str, list[str]] = {}
        """Part of the source → the classes its own loader would construct (openckpt read it without them)."""
        self.refusal: str | None = None
        """Why the weights cannot become an openckpt checkpoint without running code, naming the class."""
        self.entry_configs: dict[str, dict[str, Any]] = {}
        """Entry → its config, for sources holding several models (a diffusers pipeline's components)."""

    def entry_of(self, name: str) -> tuple[str, str]:
        """The openckpt entry and the tensor name inside it for the source's tensor ``name``."""
        return "model", name

    def is_weight(self, name: str) -> bool:
        """Whether tensor ``name`` is a model weight (not optimizer, scheduler or RNG state)."""
        return True

    @abstractmethod
    def read(self, name: str) -> torch.Tensor:
        """The tensor ``name`` as a contiguous CPU tensor; treat it as read-only."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release open files and mappings."""

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def architecture_of(entries: Iterable[TensorEntry], config: dict[str, Any] | None = None) -> Architecture:
    """Parameter counts from tensor listings: floating-point tensors count (buffers too), integers do not."""
    by_dtype: dict[str, int] = {}
    by_module: dict[str, int] = {}
    for entry in entries:
        dtype = FLOAT_DTYPES.get(entry.dtype)
        if dtype is None:
            continue
        by_dtype[dtype] = by_dtype.get(dtype, 0) + entry.numel
        top = entry.name.split(".", 1)[0]
        by_module[top] = by_module.get(top, 0) + entry.numel
    return Architecture(
        config=config,
        parameters=sum(by_dtype.values()),
        parameters_by_dtype=by_dtype,
        parameters_by_module=by_module,
    )
