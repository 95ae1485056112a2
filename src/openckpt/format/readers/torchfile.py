"""PyTorch ``.pt``/``.bin``/``.ckpt``/``.pth.tar`` files, read only through torch's weights-only loader.

Recognised layouts: plain state dicts, Lightning ``.ckpt`` (SD-1.x style too), timm ``CheckpointSaver`` files,
openai-whisper checkpoints, transformers' ``rng_state.pth``/``optimizer.pt``/``scheduler.pt``, ultralytics ``.pt``
and TorchScript archives. Classes outside the layout's allowlist are read inertly (see :mod:`.pickled`); when the
weights themselves sit inside such objects, or the file is a TorchScript program, :attr:`refusal` names what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsupportedStateError
from openckpt.format.dtypes import dtype_name
from openckpt.format.readers.base import TensorEntry, TensorSource
from openckpt.format.readers.nested import WRAPPER_KEYS, split_nested
from openckpt.format.readers.pickled import NAMESPACE, NUMPY, Loaded, has_tensor, load_torch, load_torchscript, plain

if TYPE_CHECKING:
    import torch

__all__ = ["TorchSource", "load_weights_only", "needs_of"]

_OPTIMIZER_KEYS = ("optimizer", "optimizer_states", "optimizer_state_dict", "optimizer_state")
"""Where training checkpoints keep optimizer state beside the weights: kept as the ``optimizer`` entry."""
_LIGHTNING = ("pytorch-lightning_version", "optimizer_states", "lr_schedulers", "loops", "hyper_parameters")


def load_weights_only(path: Path, *, mmap: bool) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU allowing plain-data layouts' globals; classes inert."""
    return load_torch(path, allowed=NAMESPACE + NUMPY, mmap=mmap).obj


def needs_of(classes: list[str]) -> str:
    """``ultralytics.nn.tasks.DetectionModel`` … as one phrase naming each package."""
    packages = sorted({c.partition(".")[0] for c in classes})
    shown = ", ".join(classes[:4]) + (f" and {len(classes) - 4} more" if len(classes) > 4 else "")
    return f"{shown} (package{'s' * (len(packages) != 1)} {', '.join(packages)})"


class TorchSource(TensorSource):
    """A torch-saved object, flattened to tensors with dotted names (see :mod:`.nested`)."""

    kind = "torch"

    def __init__(self, path: Path, *, zipped: bool, torchscript: bool = False) -> None:
        super().__init__(path)
        allowed = NAMESPACE + NUMPY
        loaded = load_torchscript(path) if torchscript else load_torch(path, allowed=allowed, mmap=zipped)
        self._tensors: dict[str, torch.Tensor] = {}
        self._optimizer = False
        try:
            self._take(loaded, torchscript=torchscript)
        except RecursionError:
            raise FormatError("the pickled object is nested too deeply to read", path=path) from None

    def _take(self, loaded: Loaded, *, torchscript: bool) -> None:
        classes: dict[str, str] = {}
        holders: set[str] = set()
        obj = plain(loaded.obj, classes, holders)
        if classes:
            self.needs_code[self.path.name] = list(classes)
        self._recognise(obj, torchscript=torchscript)
        if torchscript:
            program = [c for c in classes if c.startswith("__torch__.")]
            self.refusal = (
                f"a TorchScript program: torch.jit.load compiles and runs its code/ ({', '.join(program[:3])}); "
                "its tensors were read from data.pkl without running it"
            )
            obj = _without_module_flags(obj)
        elif holders:
            inner = sorted((c for c in classes if c in holders), key=lambda c: c.startswith("torch."))
            self.refusal = f"the weights are inside objects of {needs_of(inner)}: loading them runs those classes"
        optimizer: Any = None
        if isinstance(obj, Mapping) and any(k in obj for k in WRAPPER_KEYS):
            key = next((k for k in _OPTIMIZER_KEYS if k in obj and has_tensor(obj[k])), None)
            if key is not None:
                optimizer = obj[key]
                obj = {k: v for k, v in obj.items() if k != key}
        split = split_nested(obj, root_name=self.path.stem)
        self.values, self.notes = split.values, self.notes + split.notes
        self._add(split.tensors)
        if optimizer is not None:
            state = split_nested(optimizer, root_name="optimizer")
            self._add({f"optimizer/{name}": t for name, t in state.tensors.items()})
            self.values.update({f"optimizer.{k}": v for k, v in state.values.items()})
            self._optimizer = True

    def entry_of(self, name: str) -> tuple[str, str]:
        head, sep, rest = name.partition("/")
        return ("optimizer", rest) if sep and head == "optimizer" and self._optimizer else ("model", name)

    def is_weight(self, name: str) -> bool:
        return self.entry_of(name)[0] == "model"

    def _add(self, tensors: Mapping[str, torch.Tensor]) -> None:
        import torch

        for name, t in tensors.items():
            if t.layout != torch.strided or t.is_quantized:
                message = f"tensor {name!r} is sparse or quantized; only dense tensors are supported"
                raise UnsupportedStateError(message, path=self.path)
            try:
                dtype = dtype_name(t.dtype)
            except UnsupportedStateError:
                raise UnsupportedStateError(
                    f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot store", path=self.path
                ) from None
            self._tensors[name] = t.detach()
            self.tensors[name] = TensorEntry(name, dtype, tuple(t.shape))

    def _recognise(self, obj: Any, *, torchscript: bool) -> None:
        """Set :attr:`layout` and its sections from the loaded object's keys."""
        if torchscript:
            self.layout = "TorchScript archive"
            return
        if not isinstance(obj, Mapping):
            return
        keys = set(obj)
        scalars = {k: v for k, v in obj.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
        if "dims" in keys and "model_state_dict" in keys:
            self.layout = "openai-whisper checkpoint"
            self._section("Dims", obj["dims"])
        elif keys & set(_LIGHTNING) and "state_dict" in keys:
            sd = obj["state_dict"]
            diffusion = isinstance(sd, Mapping) and any(str(k).startswith("model.diffusion_model.") for k in sd)
            self.layout = "Stable Diffusion (Lightning) checkpoint" if diffusion else "Lightning checkpoint"
            self.sections["Training"] = scalars
            self._section("Hyperparameters", obj.get("hyper_parameters"))
            if isinstance(obj.get("callbacks"), Mapping):
                self.sections["Callbacks"] = {str(k): _short(v) for k, v in obj["callbacks"].items()}
        elif "arch" in keys and "state_dict" in keys:
            self.layout = "timm CheckpointSaver checkpoint"
            self.sections["Training"] = scalars
            self._section("Args", obj.get("args"))
        elif {"python", "numpy", "cpu"} <= keys:
            self.layout = "RNG state (transformers Trainer)"
        elif {"state", "param_groups"} <= keys:
            self.layout = "optimizer state dict"
            self.sections["Optimizer"] = {"param_groups": _short(obj["param_groups"])}
        elif {"base_lrs", "last_epoch"} <= keys:
            self.layout = "LR scheduler state dict"
            self.sections["Scheduler"] = dict(obj)
        elif "model" in keys and ("train_args" in keys or "ema" in keys):
            self.layout = "ultralytics checkpoint"
            self.sections["Training"] = scalars
            self._section("Args", obj.get("train_args"))

    def _section(self, title: str, value: Any) -> None:
        """Show ``value`` as section ``title`` if it is a mapping."""
        if isinstance(value, Mapping):
            self.sections[title] = dict(value)

    def read(self, name: str) -> torch.Tensor:
        return self._tensors[name].contiguous()

    def close(self) -> None:
        self._tensors.clear()


def _without_module_flags(node: Any) -> Any:
    """A TorchScript module tree without the ``training``/``_is_full_backward_hook`` flag of every module."""
    if isinstance(node, dict):
        flags = ("training", "_is_full_backward_hook")
        out = {k: _without_module_flags(v) for k, v in node.items() if k not in flags}
        return {k: v for k, v in out.items() if v != {} or not isinstance(node[k], dict)}
    return node


def _short(value: Any) -> Any:
    """``value`` without its tensors (shown as their shapes), for a section."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, Mapping):
        return {str(k): _short(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_short(v) for v in value]
    return value
