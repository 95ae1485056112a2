"""Formats of other runtimes: GGUF, ONNX, Keras (``.keras``/``.h5``), OpenVINO IR, and plain pickles (joblib).

None of them is loaded through its runtime: GGUF through ``gguf.GGUFReader``, ONNX through ``onnx`` protobufs,
Keras through ``h5py``, OpenVINO IR by its XML's ``Const`` layers over the ``.bin``. A plain pickle is never
loaded: :class:`PickleSource` lists the classes its loader would construct and refuses conversion.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError
from openckpt.format.readers.base import TensorEntry, TensorSource
from openckpt.format.readers.pickleops import pickle_globals
from openckpt.format.readers.torchfile import needs_of

if TYPE_CHECKING:
    import torch

__all__ = ["GgufSource", "KerasSource", "OnnxSource", "OpenVinoSource", "PickleSource"]

_NUMPY = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}


def _tensor(array: Any) -> torch.Tensor:
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("="))))


class _ArraySource(TensorSource):
    """Arrays read on demand by a callback per name."""

    def _put(self, name: str, dtype: Any, shape: tuple[int, ...], file: str | None = None) -> bool:
        code = _NUMPY.get(str(dtype))
        if code is None:
            self.notes.append(f"skipped {name!r}: dtype {dtype} has no safetensors equivalent")
            return False
        self.tensors[name] = TensorEntry(name, code, tuple(int(s) for s in shape), file=file)
        return True


class GgufSource(_ArraySource):
    """A GGUF file: its key/value metadata and tensors; quantized tensors are listed but not convertible."""

    kind = "gguf"

    def __init__(self, path: Path) -> None:
        from gguf import GGMLQuantizationType, GGUFReader

        super().__init__(path)
        try:
            self._reader = GGUFReader(str(path))
        except (ValueError, OSError, KeyError) as e:
            raise FormatError(f"not a readable GGUF file: {e}", path=path) from e
        plain = {
            GGMLQuantizationType.F32,
            GGMLQuantizationType.F16,
            GGMLQuantizationType.F64,
            GGMLQuantizationType.I8,
            GGMLQuantizationType.I16,
            GGMLQuantizationType.I32,
            GGMLQuantizationType.I64,
        }
        meta: dict[str, Any] = {}
        for key, field in self._reader.fields.items():
            if key.startswith("GGUF.") or (key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model"):
                continue
            try:
                value = field.contents()
            except (ValueError, IndexError, TypeError):
                continue
            meta[key] = value if not isinstance(value, list) or len(value) <= 16 else f"[{len(value)} items]"
        self.layout = f"GGUF ({meta.get('general.architecture', '?')})"
        self.sections["GGUF metadata"] = meta
        self._arrays: dict[str, Any] = {}
        quantized: dict[str, str] = {}
        for t in self._reader.tensors:
            if t.tensor_type == GGMLQuantizationType.BF16:  # stored as raw bytes: viewed as bfloat16 when read
                dims = tuple(int(x) for x in reversed(t.shape.tolist()))
                self.tensors[t.name] = TensorEntry(t.name, "BF16", dims)
                self._arrays[t.name] = t.data
                continue
            if t.tensor_type not in plain:
                shape = [int(s) for s in reversed(t.shape.tolist())]
                quantized[t.name] = f"{t.tensor_type.name} {shape}"
                continue
            if self._put(t.name, t.data.dtype, tuple(t.data.shape)):
                self._arrays[t.name] = t.data
        if quantized:
            self.sections["Quantized tensors"] = quantized
            first = next(iter(quantized.items()))
            self.refusal = (
                f"{len(quantized)} tensors are quantized (e.g. {first[0]}: {first[1]}); "
                "openckpt stores plain dtypes only and does not dequantize"
            )

    def read(self, name: str) -> torch.Tensor:
        if self.tensors[name].dtype == "BF16":
            import numpy as np
            import torch

            raw = torch.from_numpy(np.ascontiguousarray(self._arrays[name]))
            return raw.view(torch.bfloat16).reshape(self.tensors[name].shape).clone()
        return _tensor(self._arrays[name])


class OnnxSource(_ArraySource):
    """An ONNX model: initializers as tensors; graph inputs, outputs, opsets and producer as sections."""

    kind = "onnx"

    def __init__(self, path: Path) -> None:
        import onnx

        super().__init__(path)
        try:
            model = onnx.load(str(path))
        except Exception as e:
            raise FormatError(f"not a readable ONNX model: {e}", path=path) from e
        graph = model.graph
        self.layout = "ONNX model"

        def io_of(values: Any) -> dict[str, str]:
            out = {}
            for v in values:
                t = v.type.tensor_type
                dims = [d.dim_param or d.dim_value for d in t.shape.dim]
                out[v.name] = f"{onnx.TensorProto.DataType.Name(t.elem_type).lower()} {dims}"
            return out

        self.sections["Graph"] = {
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "ir_version": model.ir_version,
            "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
            "nodes": len(graph.node),
            "operators": sorted({n.op_type for n in graph.node}),
        }
        self.sections["Inputs"] = io_of(graph.input)
        self.sections["Outputs"] = io_of(graph.output)
        custom = sorted({n.domain for n in graph.node if n.domain not in ("", "ai.onnx", "ai.onnx.ml")})
        if custom:
            self.notes.append(f"custom operator domains {custom} need their runtime's kernels")
        self._inits: dict[str, Any] = {}
        for init in graph.initializer:
            array = onnx.numpy_helper.to_array(init)
            if self._put(init.name, array.dtype, array.shape):
                self._inits[init.name] = array

    def read(self, name: str) -> torch.Tensor:
        return _tensor(self._inits[name])


class KerasSource(_ArraySource):
    """A Keras ``.keras`` zip (``config.json`` + ``model.weights.h5``) or a Keras ``.h5`` file."""

    kind = "keras"

    def __init__(self, path: Path) -> None:
        import h5py

        super().__init__(path)
        config: Any = None
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "config.json" in names:
                    config = json.loads(z.read("config.json"))
                if "metadata.json" in names:
                    self.sections["Keras"] = json.loads(z.read("metadata.json"))
                weights = z.read("model.weights.h5") if "model.weights.h5" in names else None
            self._h5 = h5py.File(io.BytesIO(weights), "r") if weights is not None else None
            self.layout = "Keras 3 model (.keras)"
        else:
            self._h5 = h5py.File(path, "r")
            raw = self._h5.attrs.get("model_config")
            config = json.loads(raw) if raw is not None else None
            self.layout = "Keras model (HDF5)"
        self._datasets: dict[str, Any] = {}
        if self._h5 is not None:
            self._h5.visititems(self._visit)
        if isinstance(config, dict):
            self._describe(config)

    def _visit(self, name: str, obj: Any) -> None:
        import h5py

        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiub":
            tname = name.replace("/", ".")
            if self._put(tname, obj.dtype, obj.shape):
                self._datasets[tname] = obj

    def _describe(self, config: dict[str, Any]) -> None:
        inner = config.get("config", {}) if isinstance(config.get("config"), dict) else {}
        layers = inner.get("layers", []) if isinstance(inner.get("layers"), list) else []
        self.sections["Model"] = {
            "class": config.get("class_name"),
            "name": inner.get("name"),
            "layers": [
                f"{layer.get('class_name')} {layer.get('config', {}).get('name', '')}".strip()
                for layer in layers
                if isinstance(layer, dict)
            ][:50],
        }
        self.config = config
        lambdas = [layer for layer in layers if isinstance(layer, dict) and layer.get("class_name") == "Lambda"]
        if lambdas:
            self.needs_code["config.json"] = ["keras.layers.Lambda (marshalled Python bytecode)"]

    def read(self, name: str) -> torch.Tensor:
        return _tensor(self._datasets[name][()])

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()


_OV_TYPES = {
    "f64": "F64",
    "f32": "F32",
    "f16": "F16",
    "bf16": "BF16",
    "i64": "I64",
    "i32": "I32",
    "i16": "I16",
    "i8": "I8",
    "u64": "U64",
    "u32": "U32",
    "u16": "U16",
    "u8": "U8",
    "boolean": "BOOL",
}


class OpenVinoSource(TensorSource):
    """An OpenVINO IR ``.xml`` and the ``.bin`` beside it: each ``Const`` layer's bytes as a tensor."""

    kind = "openvino"

    def __init__(self, path: Path) -> None:
        import xml.etree.ElementTree as ET

        super().__init__(path)
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            raise FormatError(f"not readable XML: {e}", path=path) from e
        if root.tag != "net":
            raise FormatError("not an OpenVINO IR (<net> root expected)", path=path)
        self._bin = path.with_suffix(".bin")
        self.layout = f"OpenVINO IR v{root.get('version', '?')}"
        self._where: dict[str, tuple[int, int]] = {}
        types: dict[str, int] = {}
        packed: list[str] = []
        for layer in root.iter("layer"):
            types[layer.get("type", "?")] = types.get(layer.get("type", "?"), 0) + 1
            data = layer.find("data")
            if layer.get("type") != "Const" or data is None:
                continue
            name = layer.get("name") or f"const_{layer.get('id')}"
            dtype = _OV_TYPES.get(data.get("element_type", ""))
            if dtype is None:
                packed.append(f"{name} ({data.get('element_type')})")
                continue
            shape_text = data.get("shape", "")
            shape = tuple(int(s) for s in shape_text.split(",") if s.strip())
            self.tensors[name] = TensorEntry(name, dtype, shape, file=self._bin.name)
            self._where[name] = (int(data.get("offset", "0")), int(data.get("size", "0")))
            if self.tensors[name].nbytes != self._where[name][1]:
                raise FormatError(f"constant {name!r}: size does not match its shape and type", path=path)
        self.sections["Network"] = {"name": root.get("name"), "layers": types}
        if packed:
            self.refusal = f"{len(packed)} constants have packed low-bit types (e.g. {packed[0]})"

    def read(self, name: str) -> torch.Tensor:
        import torch

        from openckpt.format.dtypes import torch_dtype

        offset, size = self._where[name]
        with open(self._bin, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise FormatError(f"{self._bin.name} is shorter than constant {name!r} needs", path=self.path)
        entry = self.tensors[name]
        flat = torch.frombuffer(bytearray(data), dtype=torch_dtype(entry.dtype)) if size else torch.empty(0)
        return flat.reshape(entry.shape).clone()


def _decompressed(path: Path, limit: int = 1 << 28) -> bytes:
    """The file's bytes, decompressed (at most ``limit`` bytes) when zlib, gzip, bz2 or xz compressed (joblib)."""
    import bz2
    import lzma
    import zlib

    data = path.read_bytes()
    try:
        if data[:1] == b"\x78":
            return zlib.decompressobj().decompress(data, limit)
        if data[:2] == b"\x1f\x8b":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, limit)
        if data[:3] == b"BZh":
            return bz2.BZ2Decompressor().decompress(data, limit)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor().decompress(data, limit)
    except (zlib.error, OSError, EOFError, lzma.LZMAError) as e:
        raise FormatError(f"unreadable compressed pickle: {e}", path=path) from e
    return data


class PickleSource(TensorSource):
    """A plain pickle (joblib, sklearn, ``pickle.dump``): never loaded; its classes are listed."""

    kind = "pickle"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        classes = pickle_globals(_decompressed(path))
        joblib = any(c.startswith("joblib.") for c in classes)
        self.layout = "joblib pickle" if joblib else "plain pickle"
        self.needs_code[path.name] = classes
        named = needs_of(classes) if classes else "objects"
        self.refusal = f"a {self.layout}: loading it constructs {named}; openckpt never unpickles arbitrary objects"

    def read(self, name: str) -> torch.Tensor:
        raise KeyError(name)
