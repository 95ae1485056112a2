"""What an estimate needs to know of a model without its weights: ``config.json`` and the safetensors headers.

From a directory, the headers are read from the files; from a hub repo, huggingface_hub fetches ``config.json``
and reads each safetensors header with HTTP Range requests (``get_safetensors_metadata``): no weights are
downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError
from openckpt.format.tensorfile import read_header

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = ["ModelFacts", "hub_facts", "load_config", "read_facts"]

_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True)
class ModelFacts:
    """A model's config and its tensors' shapes and dtypes (name → (safetensors dtype, shape))."""

    source: str
    config: dict[str, Any]
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def parameters(self) -> int:
        """Parameters stored in the weights (tied weights are stored, and counted, once)."""
        total = 0
        for _, shape in self.tensors.values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total

    @property
    def stored_bytes(self) -> int:
        return sum(_BYTES.get(dtype, 4) * _numel(shape) for dtype, shape in self.tensors.values())

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, (_, shape) in self.tensors.items()}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def load_config(directory: Path) -> Any:
    """The parsed ``config.json`` of a model directory; :class:`FormatError` if it is missing or not JSON."""
    path = directory / "config.json"
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise FormatError("no config.json: not a transformers model directory", path=directory) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON: {e}", path=path) from e


def read_facts(directory: Path) -> ModelFacts:
    """Facts of a local model directory: its config.json and the headers of its ``*.safetensors`` files."""
    config = load_config(directory)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FormatError("no *.safetensors weights to read shapes from", path=directory)
    for file in files:
        infos, _ = read_header(file)
        tensors.update({name: (info.dtype, info.shape) for name, info in infos.items()})
    return ModelFacts(str(directory), config, tensors)


def hub_facts(api: HfApi, repo_id: str, *, revision: str | None = None) -> ModelFacts:
    """Facts of a hub repo, from its config.json and the safetensors headers only (Range requests)."""
    config_path = api.hf_hub_download(repo_id, "config.json", revision=revision)
    config = json.loads(Path(config_path).read_bytes())
    metadata = api.get_safetensors_metadata(repo_id, revision=revision)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in metadata.files_metadata.values():
        tensors.update({name: (info.dtype, tuple(info.shape)) for name, info in file.tensors.items()})
    where = f"{repo_id}@{revision}" if revision else repo_id
    return ModelFacts(where, config, tensors)
