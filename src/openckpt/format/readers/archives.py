"""Zip archives that hold tensors beside other things: Stable-Baselines3 model zips and ``torch.export`` ``.pt2``.

SB3: the ``data`` member is JSON (hyperparameters, spaces, the policy class); fields with ``:serialized:`` are
cloudpickle streams that SB3's loader unpickles, so they are only listed (their classes named), never loaded.
``policy.pth``, ``policy.optimizer.pth`` and ``pytorch_variables.pth`` are read weights-only.
``.pt2``: each weight is raw bytes described by ``model_weights_config.json`` (or a pickled tensor, read
weights-only); the program itself (``models/*.json``) is summarised, not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, OpenckptError, UnsafeFileError
from openckpt.format.dtypes import torch_dtype
from openckpt.format.readers.base import TensorEntry, TensorSource
from openckpt.format.readers.composite import CompositeSource
from openckpt.format.readers.pickled import is_blocked
from openckpt.format.readers.pickleops import pickle_globals
from openckpt.format.readers.torchfile import TorchSource

if TYPE_CHECKING:
    import torch

__all__ = ["ExportSource", "Sb3Source", "is_pt2", "is_sb3"]

_SCALAR_TYPES = {
    1: "U8",
    2: "I8",
    3: "I16",
    4: "I32",
    5: "I64",
    6: "F16",
    7: "F32",
    8: "F64",
    12: "BOOL",
    13: "BF16",
    28: "U16",
    29: "F8_E4M3",
    30: "F8_E5M2",
    34: "U32",
    35: "U64",
}
"""``torch._export.serde.schema.ScalarType`` → safetensors dtype names."""
_SB3_PARTS = {"policy.pth": "model", "policy.optimizer.pth": "optimizer", "pytorch_variables.pth": "variables"}


def is_sb3(names: list[str]) -> bool:
    return "data" in names and "policy.pth" in names


def is_pt2(names: list[str]) -> bool:
    return any(n.endswith("/archive_format") or n == "archive_format" for n in names) and any(
        "/data/weights/" in n or n.startswith("data/weights/") for n in names
    )


class Sb3Source(CompositeSource):
    """A Stable-Baselines3 ``model.zip``: policy weights (entry ``model``), optimizer and variables."""

    kind = "sb3"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._tmp = tempfile.TemporaryDirectory(prefix="openckpt-sb3-")
        try:
            self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        path = self.path
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            try:
                data = json.loads(z.read("data"))
            except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise FormatError(f"SB3 archive without a readable data member: {e}", path=path) from e
            version = (
                z.read("_stable_baselines3_version").decode(errors="replace").strip()
                if "_stable_baselines3_version" in names
                else None
            )
            for member, prefix in _SB3_PARTS.items():
                if member not in names:
                    continue
                file = Path(self._tmp.name) / member
                file.write_bytes(z.read(member))
                try:
                    child = TorchSource(file, zipped=file.read_bytes()[:2] == b"PK")
                except OpenckptError as e:
                    reason = str(e).removeprefix(f"{file}: ")
                    raise type(e)(f"member {member}: {reason}", path=path) from e
                if child.tensors:
                    weights = prefix == "model"
                    self.adopt("" if weights else prefix, child, state=not weights, where=member)
        if not isinstance(data, dict):
            raise FormatError("SB3 data member is not a JSON object", path=path)
        self.layout = "Stable-Baselines3 model" + (f" (SB3 {version})" if version else "")
        self._describe(data)

    def _describe(self, data: dict[str, Any]) -> None:
        policy: dict[str, Any] = {}
        hyper: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict) and ":serialized:" in value:
                classes = _serialized_classes(value[":serialized:"])
                if blocked := [c for c in classes if is_blocked(c)]:
                    message = f"refusing to read: the data field {key!r} calls {', '.join(blocked)} when loaded"
                    raise UnsafeFileError(message, path=self.path)
                self.needs_code[f"data:{key}"] = classes
                shown = {k: v for k, v in value.items() if not k.startswith(":") and not k.startswith("__")}
                kind = str(value.get(":type:", "")).removeprefix("<class '").removesuffix("'>")
                if key == "policy_class":
                    module = value.get("__module__")
                    policy["class"] = next((c for c in classes if module and c.startswith(module)), module or kind)
                elif key.endswith("_space"):
                    policy[key] = {
                        "type": kind,
                        **{k: v for k, v in shown.items() if k in ("shape", "dtype", "n", "low", "high", "_shape")},
                    }
                continue
            if (
                isinstance(value, int | float | str | bool)
                or value is None
                or (isinstance(value, dict | list) and key in ("policy_kwargs", "learning_rate", "train_freq"))
            ):
                hyper[key] = value
        if isinstance(data.get("policy_kwargs"), dict):
            policy["policy_kwargs"] = data["policy_kwargs"]
        self.sections["Policy"] = policy
        self.sections["Hyperparameters"] = hyper
        self.values.update({k: v for k, v in hyper.items() if v is not None})
        if "num_timesteps" in hyper:
            self.values["step"] = hyper["num_timesteps"]

    def close(self) -> None:
        super().close()
        self._tmp.cleanup()


def _serialized_classes(text: Any) -> list[str]:
    try:
        data = base64.b64decode(str(text), validate=False)
    except (binascii.Error, ValueError):
        return ["<undecodable>"]
    return pickle_globals(data) or ["<no class>"]


class ExportSource(TensorSource):
    """A ``torch.export.save`` archive (``.pt2``): its weights and constants by their fully qualified names."""

    kind = "pt2"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.layout = "torch.export program (.pt2)"
        self._zip = zipfile.ZipFile(path)
        self._where: dict[str, tuple[str, dict[str, Any]]] = {}
        names = self._zip.namelist()
        models: list[str] = []
        for member in names:
            for kind in ("weights", "constants"):
                if member.endswith(f"/data/{kind}/model_{kind}_config.json"):
                    self._config(member, kind)
            if "/models/" in member and member.endswith(".json"):
                models.append(member.rsplit("/", 1)[1].removesuffix(".json"))
        self.sections["Program"] = {"models": models, "weights": len(self.tensors)}

    def _config(self, member: str, kind: str) -> None:
        try:
            config = json.loads(self._zip.read(member)).get("config", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise FormatError(f"unreadable {member}: {e}", path=self.path) from e
        folder = member.rsplit("/", 1)[0]
        for name, spec in config.items():
            meta = spec.get("tensor_meta") or {}
            dtype = _SCALAR_TYPES.get(int(meta.get("dtype", 0)))
            if dtype is None:
                raise FormatError(f"{kind} {name!r} has an unsupported dtype code {meta.get('dtype')}", path=self.path)
            shape = tuple(int(s["as_int"]) for s in meta.get("sizes", []))
            self.tensors[name] = TensorEntry(name, dtype, shape, file=f"{folder}/{spec['path_name']}")
            self._where[name] = (f"{folder}/{spec['path_name']}", spec)

    def read(self, name: str) -> torch.Tensor:
        import io

        import torch

        member, spec = self._where[name]
        data = self._zip.read(member)
        entry = self.tensors[name]
        if spec.get("use_pickle"):
            t = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if not isinstance(t, torch.Tensor):
                raise FormatError(f"weight {name!r} is not a tensor", path=self.path)
            return t.detach().contiguous()
        meta = spec["tensor_meta"]
        flat = torch.frombuffer(bytearray(data), dtype=torch_dtype(entry.dtype)) if data else torch.empty(0)
        strides = tuple(int(s["as_int"]) for s in meta.get("strides", []))
        offset = int(meta.get("storage_offset", {}).get("as_int", 0))
        return flat.as_strided(entry.shape, strides, offset).contiguous()

    def close(self) -> None:
        self._zip.close()
