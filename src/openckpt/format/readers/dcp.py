"""``torch.distributed.checkpoint`` directories: ``.metadata`` plus ``*.distcp`` files.

The metadata is unpickled by torch's weights-only unpickler allowing exactly its dataclasses
(:data:`~.pickled.DCP_METADATA`); each tensor chunk is the byte range its storage index names, a ``torch.save``
stream read weights-only. Byte items (non-tensor state) are read the same way and kept as values when JSON-able.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsupportedStateError
from openckpt.format.dtypes import dtype_name
from openckpt.format.readers.base import TensorEntry, TensorSource
from openckpt.format.readers.native import member_path
from openckpt.format.readers.pickled import DCP_METADATA, load_pickle, plain

if TYPE_CHECKING:
    import torch

__all__ = ["DcpSource"]

METADATA = ".metadata"


class DcpSource(TensorSource):
    """Tensors by their fully qualified names (``model.0.weight``), reassembled from their chunks."""

    kind = "dcp"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.layout = "torch.distributed.checkpoint directory"
        meta = load_pickle((path / METADATA).read_bytes(), allowed=DCP_METADATA, path=path / METADATA)
        if meta.opaque:
            raise FormatError(f"unexpected classes in the metadata: {', '.join(meta.opaque)}", path=path / METADATA)
        try:
            self._index(meta.obj)
        except (AttributeError, TypeError, KeyError) as e:
            raise FormatError(f"not DCP metadata: {e!r}", path=path / METADATA) from e

    def _index(self, metadata: Any) -> None:
        from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

        storage: dict[str, list[tuple[tuple[int, ...], Any]]] = {}
        for index, info in metadata.storage_data.items():
            offsets = tuple(index.offset) if index.offset is not None else ()
            storage.setdefault(index.fqn, []).append((offsets, info))
        self._chunks: dict[str, list[tuple[tuple[int, ...], Any]]] = {}
        self.sections["DCP"] = {
            "version": getattr(metadata, "version", None),
            "items": len(metadata.state_dict_metadata),
        }
        for fqn, item in metadata.state_dict_metadata.items():
            if isinstance(item, TensorStorageMetadata):
                try:
                    dtype = dtype_name(item.properties.dtype)
                except UnsupportedStateError:
                    raise UnsupportedStateError(
                        f"tensor {fqn!r} has dtype {item.properties.dtype}", path=self.path
                    ) from None
                self.tensors[fqn] = TensorEntry(fqn, dtype, tuple(item.size), file=self._file_of(storage.get(fqn)))
                self._chunks[fqn] = storage.get(fqn, [])
                covered = sum(math.prod(c.sizes) for c in item.chunks)
                if covered != math.prod(item.size):
                    raise FormatError(f"the chunks of {fqn!r} do not cover it", path=self.path)
            elif isinstance(item, BytesStorageMetadata):
                for _, info in storage.get(fqn, [])[:1]:
                    self.values[fqn] = self._bytes_item(fqn, info)

    @staticmethod
    def _file_of(chunks: list[tuple[tuple[int, ...], Any]] | None) -> str | None:
        files = {str(info.relative_path) for _, info in chunks or []}
        return files.pop() if len(files) == 1 else None

    def _slice(self, info: Any) -> bytes:
        if getattr(info, "transform_descriptors", None):
            raise FormatError(f"transformed (compressed) DCP items are not supported: {info}", path=self.path)
        file = member_path(self.path, str(info.relative_path))
        with open(file, "rb") as f:
            f.seek(int(info.offset))
            data = f.read(int(info.length))
        if len(data) != int(info.length):
            raise FormatError(f"{info.relative_path} is shorter than its index says", path=self.path)
        return data

    def _load(self, info: Any) -> Any:
        import torch

        from openckpt.format.readers.pickled import reason

        try:
            return torch.load(io.BytesIO(self._slice(info)), map_location="cpu", weights_only=True)
        except Exception as e:
            raise FormatError(f"unreadable item in {info.relative_path}: {reason(e)}", path=self.path) from e

    def _bytes_item(self, fqn: str, info: Any) -> Any:
        classes: dict[str, str] = {}
        value = plain(self._load(info), classes, set())
        if classes:
            self.needs_code[fqn] = list(classes)
        return value

    def read(self, name: str) -> torch.Tensor:
        import torch

        from openckpt.format.dtypes import torch_dtype

        entry = self.tensors[name]
        out = torch.empty(entry.shape, dtype=torch_dtype(entry.dtype))
        for offsets, info in self._chunks[name]:
            part = self._load(info)
            if not isinstance(part, torch.Tensor):
                raise FormatError(f"a chunk of {name!r} is not a tensor", path=self.path)
            region = tuple(slice(o, o + s) for o, s in zip(offsets, part.shape, strict=True))
            out[region] = part
        return out
