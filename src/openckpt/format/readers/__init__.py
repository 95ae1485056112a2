"""Read-only views of tensor files, routed by content.

Formats: openckpt checkpoints, safetensors files, Hugging Face model directories, PyTorch files (weights-only)
and numpy ``.npz`` archives.

``open_source(path)`` returns a :class:`TensorSource`: tensors listed up front and read one at a time.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from openckpt.errors import CheckpointNotFoundError, FormatError
from openckpt.format.manifest import MANIFEST_NAME
from openckpt.format.readers.base import FLOAT_DTYPES, TensorEntry, TensorSource, architecture_of

__all__ = ["FLOAT_DTYPES", "TensorEntry", "TensorSource", "architecture_of", "open_source", "sniff"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise FormatError(f"unreadable zip archive: {e}", path=path) from e
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch"
    if all(n.endswith(".npy") for n in names):
        return "npz"
    raise FormatError("zip archive that is neither a torch file nor an .npz archive", path=path)


def sniff(path: Path) -> str:
    """The format at ``path`` by content, never by extension: ``openckpt``, ``huggingface``, ``safetensors``,
    ``torch`` (zip), ``torch-legacy`` (pickle) or ``npz``."""
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return "openckpt"
        if any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json")):
            return "huggingface"
        raise FormatError(f"directory holds neither {MANIFEST_NAME} nor .safetensors weights", path=path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except FileNotFoundError:
        raise CheckpointNotFoundError("no such file or directory", path=path) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e}", path=path) from e
    if head.startswith(_ZIP_MAGIC):
        return _zip_kind(path)
    if head[:1] == b"\x80":
        return "torch-legacy"
    if head[8:9] == b"{":
        return "safetensors"
    raise FormatError("unrecognised format: expected safetensors, a torch file or an .npz archive", path=path)


def open_source(path: str | Path, *, entry: str | None = None) -> TensorSource:
    """Open the tensors at ``path``; for an openckpt checkpoint, ``entry`` selects one entry by bare names."""
    from openckpt.format.readers.checkpoint import CheckpointSource
    from openckpt.format.readers.native import HuggingFaceSource, SafetensorsSource

    path = Path(path)
    kind = sniff(path)
    if kind == "openckpt":
        return CheckpointSource(path, entry=entry)
    if kind == "huggingface":
        return HuggingFaceSource(path)
    if kind == "safetensors":
        return SafetensorsSource(path)
    if kind == "npz":
        from openckpt.format.readers.npz import NpzSource

        return NpzSource(path)
    from openckpt.format.readers.torchfile import TorchSource

    return TorchSource(path, zipped=kind == "torch")
