"""Sources backed by safetensors files: one file, or a Hugging Face model directory."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, IntegrityError
from openckpt.format.dtypes import torch_dtype
from openckpt.format.readers.base import TensorEntry, TensorSource
from openckpt.format.tensorfile import TensorInfo, read_header, read_into

if TYPE_CHECKING:
    import torch

__all__ = ["HuggingFaceSource", "SafetensorsBacked", "SafetensorsSource", "hf_weights", "member_path"]


def member_path(directory: Path, name: str) -> Path:
    """``directory/name`` for a relative POSIX ``name``; refuses names that would leave the directory."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(p in (".", "..") for p in parts) or "\\" in name:
        raise FormatError(f"file name {name!r} is not a relative path inside the directory", path=directory)
    return directory.joinpath(*parts)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"cannot read JSON: {e}", path=path) from e


class SafetensorsBacked(TensorSource):
    """Reads tensors through parsed safetensors headers, one tensor per call."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._headers: dict[Path, dict[str, TensorInfo]] = {}
        self._where: dict[str, tuple[Path, str]] = {}
        """Source name → (file, name inside the file)."""

    def _header(self, file: Path) -> dict[str, TensorInfo]:
        if file not in self._headers:
            infos, metadata = read_header(file)
            self._headers[file] = infos
            self.metadata.update(metadata)
        return self._headers[file]

    def _add_file(self, file: Path, relative: str | None) -> None:
        for name, info in self._header(file).items():
            if name in self.tensors:
                raise FormatError(f"tensor {name!r} is also in {self.tensors[name].file}", path=file)
            self.tensors[name] = TensorEntry(name, info.dtype, info.shape, file=relative)
            self._where[name] = (file, name)

    def read(self, name: str) -> torch.Tensor:
        import torch

        file, inner = self._where[name]
        info = self._header(file).get(inner)
        entry = self.tensors[name]
        if info is None or info.dtype != entry.dtype or info.shape != entry.shape:
            raise IntegrityError(f"tensor {inner!r} differs from its listing", path=file)
        out = torch.empty(info.shape, dtype=torch_dtype(info.dtype))
        read_into(file, {inner: out}, {inner: info})
        return out


class SafetensorsSource(SafetensorsBacked):
    """One ``.safetensors`` file."""

    kind = "safetensors"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._add_file(path, None)


def hf_weights(directory: Path) -> Path | None:
    """A Hugging Face model directory's weights: its safetensors index, else its one safetensors file; the plain
    ``model``/``diffusion_pytorch_model``/``adapter_model`` names win over variants (``*.fp16.safetensors``)."""
    for stem in ("model", "diffusion_pytorch_model", "adapter_model"):
        for name in (f"{stem}.safetensors.index.json", f"{stem}.safetensors"):
            if (directory / name).is_file():
                return directory / name
    for pattern in ("*.safetensors.index.json", "*.safetensors"):
        found = sorted(p for p in directory.glob(pattern) if p.is_file())
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(p.name for p in found[:4])
            raise FormatError(f"ambiguous weights: several {pattern} files ({names})", path=directory)
    return None


class HuggingFaceSource(SafetensorsBacked):
    """A Hugging Face model directory: ``config.json`` and one safetensors file or shards with an index."""

    kind = "huggingface"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        weights = hf_weights(path)
        if weights is None:
            raise FormatError("no .safetensors weights in this directory", path=path)
        if (path / "config.json").is_file():
            config = _read_json(path / "config.json")
            self.config = config if isinstance(config, dict) else None
        if not weights.name.endswith(".index.json"):
            self._add_file(weights, weights.name)
            return
        index = _read_json(weights)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise FormatError("index has no weight_map of tensor → file", path=weights)
        for fname in sorted(set(weight_map.values())):
            self._add_file(member_path(path, fname), fname)
        for name, fname in weight_map.items():
            listed = self.tensors.get(name)
            if listed is None or listed.file != fname:
                raise FormatError(f"index maps {name!r} to {fname}, which does not hold it", path=weights)
