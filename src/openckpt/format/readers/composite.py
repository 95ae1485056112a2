"""Sources made of other sources: a diffusers pipeline's components, a Trainer ``checkpoint-N/``'s files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError
from openckpt.format.readers.base import TensorSource

if TYPE_CHECKING:
    import torch

__all__ = ["CompositeSource", "read_json"]


def read_json(path: Path) -> Any:
    """The JSON at ``path``; :class:`FormatError` if it is not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"cannot read JSON: {e}", path=path) from e


class CompositeSource(TensorSource):
    """Tensors of child sources, each under ``prefix/``; a prefix may be an openckpt entry of its own."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._children: list[TensorSource] = []
        self._where: dict[str, tuple[TensorSource, str]] = {}
        self._entries: set[str] = set()
        self._state: set[str] = set()

    def adopt(
        self, prefix: str, child: TensorSource, *, entry: bool = True, state: bool = False, where: str | None = None
    ) -> None:
        """Add ``child``'s tensors as ``prefix/name`` (bare names for an empty prefix); ``where`` names its files.

        ``entry``: the prefix becomes an openckpt entry of its own; ``state``: its tensors are training state
        (optimizer, RNG), not model weights.
        """
        self._children.append(child)
        if prefix and entry:
            self._entries.add(prefix)
        if prefix and state:
            self._state.add(prefix)
        base = where if where is not None else prefix
        for name, listed in child.tensors.items():
            full = f"{prefix}/{name}" if prefix else name
            if full in self.tensors:
                raise FormatError(f"two parts hold a tensor named {full!r}", path=self.path)
            file = f"{base}/{listed.file}" if base and listed.file else listed.file or base or None
            self.tensors[full] = replace(listed, name=full, file=file)
            self._where[full] = (child, name)
        label = f"{base}/" if base else ""
        self.notes += [f"{label}: {note}" if base else note for note in child.notes]
        for part, names in child.needs_code.items():
            self.needs_code[base if base and part == base.rsplit("/", 1)[-1] else f"{label}{part}"] = names
        if child.refusal is not None and self.refusal is None:
            self.refusal = f"{base or child.path.name}: {child.refusal}"

    def entry_of(self, name: str) -> tuple[str, str]:
        head, sep, rest = name.partition("/")
        return (head, rest) if sep and head in self._entries else ("model", name)

    def is_weight(self, name: str) -> bool:
        head, sep, _ = name.partition("/")
        child, inner = self._where[name]
        return not (sep and head in self._state) and child.is_weight(inner)

    def read(self, name: str) -> torch.Tensor:
        child, inner = self._where[name]
        return child.read(inner)

    def close(self) -> None:
        for child in self._children:
            child.close()
