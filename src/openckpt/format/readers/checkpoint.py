"""openckpt checkpoints as tensor sources, listed from the manifest without opening a tensor file.

A single-process checkpoint records each tensor's file, dtype, shape and blake3. A checkpoint saved by several ranks
records its module and optimizer tensors in ``distributed.tensors`` as chunks (file, offsets, shape) that reading
reassembles; its rank-local entries (one copy per rank) are not listed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import IntegrityError, ManifestError
from openckpt.format.dtypes import ITEMSIZE, torch_dtype
from openckpt.format.manifest import read_manifest
from openckpt.format.readers.base import TensorEntry
from openckpt.format.readers.native import SafetensorsBacked, member_path
from openckpt.format.tensorfile import read_into

if TYPE_CHECKING:
    import torch

__all__ = ["CheckpointSource"]

Chunk = tuple[Path, tuple[int, ...], tuple[int, ...]]
"""(file, offsets, shape) of one piece of a tensor saved by several ranks."""


class CheckpointSource(SafetensorsBacked):
    """Names are ``"<entry>/<tensor>"``; with ``entry`` given, only that entry's tensors, by bare name."""

    kind = "openckpt"

    def __init__(self, path: Path, *, entry: str | None = None) -> None:
        super().__init__(path)
        self.manifest = read_manifest(path)
        if entry is not None and entry not in self.manifest.entries:
            raise ManifestError(f"the checkpoint has no entry {entry!r}", path=path)
        architecture = self.manifest.architecture
        self.config = architecture.config if architecture is not None else None
        self._chunks: dict[str, tuple[str, list[Chunk]]] = {}
        """Name → (name inside the files, chunks), for tensors saved by several ranks."""
        for key, rec in self.manifest.tensors.items():
            name, inner = self._name(key, entry)
            if name is None:
                continue
            if rec.file not in self.manifest.files:
                raise ManifestError(f"tensor {key!r} is in {rec.file!r}, which has no file record", path=path)
            self._add(key, name, rec.dtype, rec.shape, file=rec.file, blake3=rec.blake3)
            self._where[name] = (member_path(path, rec.file), inner)
        if self.manifest.distributed is not None:
            self._add_distributed(entry)

    @staticmethod
    def _name(key: str, entry: str | None) -> tuple[str | None, str]:
        owner, _, inner = key.partition("/")
        if entry is None:
            return key, inner
        return (inner if owner == entry else None), inner

    def _add(self, key: str, name: str, dtype: str, shape: list[int], **extra: Any) -> None:
        if dtype not in ITEMSIZE:
            raise ManifestError(f"tensor {key!r} has unknown dtype {dtype!r}", path=self.path)
        self.tensors[name] = TensorEntry(name, dtype, tuple(shape), **extra)

    def _add_distributed(self, entry: str | None) -> None:
        distributed = self.manifest.distributed or {}
        local = distributed.get("local_entries") or []
        if local:
            self.notes.append(f"rank-local entries {sorted(local)} (one copy per rank) are not listed")
        try:
            for key, rec in dict(distributed.get("tensors") or {}).items():
                name, _ = self._name(key, entry)
                if name is None:
                    continue
                chunks = [
                    (member_path(self.path, c["file"]), tuple(c["offsets"]), tuple(c["shape"])) for c in rec["chunks"]
                ]
                if sum(math.prod(shape) for _, _, shape in chunks) != math.prod(rec["shape"]):
                    raise ManifestError(f"the chunks of tensor {key!r} do not cover it", path=self.path)
                files = {c["file"] for c in rec["chunks"]}
                self._add(key, name, rec["dtype"], rec["shape"], file=files.pop() if len(files) == 1 else None)
                self._chunks[name] = (key, chunks)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ManifestError(f"invalid distributed tensor layout: {e!r}", path=self.path) from e

    def read(self, name: str) -> torch.Tensor:
        import torch

        if name not in self._chunks:
            return super().read(name)
        key, chunks = self._chunks[name]
        entry = self.tensors[name]
        out = torch.empty(entry.shape, dtype=torch_dtype(entry.dtype))
        for file, offsets, shape in chunks:
            info = self._header(file).get(key)
            if info is None or info.shape != shape or info.dtype != entry.dtype:
                raise IntegrityError(f"tensor {key!r}: a chunk differs from the manifest's layout", path=file)
            part = torch.empty(shape, dtype=out.dtype)
            read_into(file, {key: part}, {key: info})
            out[tuple(slice(o, o + s) for o, s in zip(offsets, shape, strict=True))] = part
        return out
