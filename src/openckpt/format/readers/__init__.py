"""Read-only views of tensor files, routed by content.

Formats: openckpt checkpoints, safetensors files, Hugging Face model directories (safetensors or ``.bin``),
diffusers pipelines, Trainer ``checkpoint-N/`` and DCP directories, PyTorch files (weights-only; Lightning, timm,
whisper, ultralytics, TorchScript), ``.pt2``, SB3 zips, numpy ``.npz``, GGUF, ONNX, Keras, OpenVINO IR and plain
pickles (listed, never loaded).

``open_source(path)`` returns a :class:`TensorSource`: tensors listed up front and read one at a time.
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

from openckpt.errors import CheckpointNotFoundError, FormatError
from openckpt.format.manifest import MANIFEST_NAME
from openckpt.format.readers.base import FLOAT_DTYPES, TensorEntry, TensorSource, architecture_of
from openckpt.format.readers.containers import container_kind

__all__ = ["FLOAT_DTYPES", "TensorEntry", "TensorSource", "architecture_of", "open_source", "sniff"]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TORCH_LEGACY = b"\x8a\x0a"
"""A legacy ``torch.save`` file starts with its magic number pickled as a 10-byte LONG1."""


def _zip_kind(path: Path) -> str:
    from openckpt.format.readers.archives import is_pt2, is_sb3

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise FormatError(f"unreadable zip archive: {e}", path=path) from e
    if is_sb3(names):
        return "sb3"
    if is_pt2(names):
        return "pt2"
    if "config.json" in names and "model.weights.h5" in names:
        return "keras"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        code = any("/code/" in n or n.startswith("code/") for n in names)
        return "torchscript" if code and any(n.endswith("constants.pkl") for n in names) else "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _dir_kind(path: Path) -> str:
    from openckpt.format.readers.hfdirs import bin_weights

    if (path / MANIFEST_NAME).is_file():
        return "openckpt"
    if (path / ".metadata").is_file() and any(path.glob("*.distcp")):
        return "dcp"
    if (path / "model_index.json").is_file():
        return "diffusers"
    if (path / "trainer_state.json").is_file():
        return "trainer"
    if any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json")):
        return "huggingface"
    if (xml := _single(path, "*.xml")) is not None and xml.with_suffix(".bin").is_file():
        return "openvino"
    if bin_weights(path):
        return "huggingface-bin"
    if _single(path, "*.onnx"):
        return "onnx"
    raise FormatError(
        f"directory holds none of: {MANIFEST_NAME}, .safetensors or .bin weights, model_index.json, "
        "trainer_state.json, DCP .metadata, one .onnx or OpenVINO .xml",
        path=path,
    )


def _single(directory: Path, pattern: str) -> Path | None:
    """The one file matching ``pattern`` in ``directory``, if exactly one does."""
    found = [p for p in directory.glob(pattern) if p.is_file()]
    return found[0] if len(found) == 1 else None


def _compressed_pickle(head: bytes) -> bool:
    """Whether ``head`` starts a zlib/gzip/bz2/xz stream whose first byte is a pickle's PROTO (joblib's ``.z``)."""
    import bz2
    import lzma
    import zlib

    for wbits, magic in ((zlib.MAX_WBITS, b"\x78"), (16 + zlib.MAX_WBITS, b"\x1f\x8b")):
        if head.startswith(magic):
            try:
                return zlib.decompressobj(wbits).decompress(head, 2)[:1] == b"\x80"
            except zlib.error:
                return False
    for magic, make in ((b"BZh", bz2.BZ2Decompressor), (b"\xfd7zXZ\x00", lzma.LZMADecompressor)):
        if head.startswith(magic):
            try:
                return make().decompress(head, 2)[:1] == b"\x80"
            except (OSError, EOFError, lzma.LZMAError):
                return False
    return False


def sniff(path: Path) -> str:
    """The format at ``path`` by content, never by extension: ``openckpt``, ``huggingface``, ``huggingface-bin``,
    ``diffusers``, ``trainer``, ``dcp`` (directories); ``safetensors``, ``torch`` (zip), ``torch-legacy``,
    ``torchscript``, ``pt2``, ``sb3``, ``npz``, ``keras``, ``gguf``, ``onnx``, ``openvino``, ``pickle`` (files);
    ``zip``, ``tar``, ``7z`` (containers of any of these)."""
    if path.is_dir():
        return _dir_kind(path)
    head = _read_head(path)
    if head.startswith(_ZIP_MAGIC):
        return _zip_kind(path)
    if _compressed_pickle(head):
        return "pickle"
    if (container := container_kind(path, head)) is not None:
        return container
    if (kind := _head_kind(head)) is not None:
        return kind
    if head[:1] == b"\x08" and _is_onnx(path):
        return "onnx"
    raise FormatError("unrecognised format: expected safetensors, a torch file, .npz, GGUF, ONNX, Keras", path=path)


def _read_head(path: Path) -> bytes:
    """The first 512 bytes of the file at ``path``."""
    try:
        with open(path, "rb") as f:
            return f.read(512)
    except FileNotFoundError:
        raise CheckpointNotFoundError("no such file or directory", path=path) from None
    except OSError as e:
        raise FormatError(f"cannot read: {e}", path=path) from e


def _head_kind(head: bytes) -> str | None:
    """The single-file format that the first bytes alone identify (a pickle, GGUF, HDF5, OpenVINO XML,
    safetensors), or None."""
    if head[:1] == b"\x80":
        return "torch-legacy" if head[2:4] == _TORCH_LEGACY else "pickle"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(_HDF5_MAGIC):
        return "keras"
    if head.lstrip().startswith(b"<?xml") or head.lstrip().startswith(b"<net"):
        return "openvino"
    if head[8:9] == b"{":
        return "safetensors"
    return None


def _is_onnx(path: Path) -> bool:
    try:
        import onnx
    except ImportError:
        return False
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return bool(model.graph.node or model.graph.initializer)


def open_source(path: str | Path, *, entry: str | None = None, opaque_ok: bool = False) -> TensorSource:
    """Open the tensors at ``path``; for an openckpt checkpoint, ``entry`` selects one entry by bare names.

    ``opaque_ok``: a file no format claims opens as an :class:`~.containers.OpaqueSource` (no tensors) instead of
    raising :class:`FormatError`.
    """
    from openckpt.format.readers import archives, foreign, hfdirs
    from openckpt.format.readers.checkpoint import CheckpointSource
    from openckpt.format.readers.containers import ContainerSource, OpaqueSource
    from openckpt.format.readers.dcp import DcpSource
    from openckpt.format.readers.native import HuggingFaceSource, SafetensorsSource
    from openckpt.format.readers.npz import NpzSource
    from openckpt.format.readers.torchfile import TorchSource

    path = Path(path)
    try:
        kind = sniff(path)
    except FormatError as e:
        if opaque_ok and path.is_file() and "unrecognised format" in str(e):
            return OpaqueSource(path, why="no format openckpt reads claims it")
        raise
    if kind == "openckpt":
        return CheckpointSource(path, entry=entry)
    if kind in ("zip", "tar", "7z"):
        return ContainerSource(path, kind=kind, open_member=functools.partial(open_source, opaque_ok=True))
    if path.is_dir() and kind in ("onnx", "openvino"):
        path = _single(path, "*.onnx" if kind == "onnx" else "*.xml") or path
    simple: dict[str, type[TensorSource]] = {
        "huggingface": HuggingFaceSource,
        "huggingface-bin": hfdirs.BinModelSource,
        "diffusers": hfdirs.PipelineSource,
        "trainer": hfdirs.TrainerSource,
        "dcp": DcpSource,
        "safetensors": SafetensorsSource,
        "npz": NpzSource,
        "sb3": archives.Sb3Source,
        "pt2": archives.ExportSource,
        "keras": foreign.KerasSource,
        "gguf": foreign.GgufSource,
        "onnx": foreign.OnnxSource,
        "openvino": foreign.OpenVinoSource,
        "pickle": foreign.PickleSource,
    }
    if kind in simple:
        return simple[kind](path)
    return TorchSource(path, zipped=kind in ("torch", "torchscript"), torchscript=kind == "torchscript")
