"""Hugging Face directories beyond one safetensors model: ``.bin``-only models, diffusers pipelines, Trainer
``checkpoint-N/`` directories.

Every ``.bin``/``.pt``/``.pth`` inside is read by :class:`~.torchfile.TorchSource` (weights-only). A Trainer's
``training_args.bin`` pickles ``transformers.TrainingArguments``: it is read inertly and reported as needing code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openckpt.errors import FormatError
from openckpt.format.readers.base import TensorSource, architecture_of
from openckpt.format.readers.composite import CompositeSource, read_json
from openckpt.format.readers.native import HuggingFaceSource, member_path
from openckpt.format.readers.torchfile import TorchSource

__all__ = ["BinModelSource", "PipelineSource", "TrainerSource", "bin_weights", "open_model_dir"]

_BIN_NAMES = ("pytorch_model", "diffusion_pytorch_model", "model", "adapter_model")
_SAFE_NAMES = ("model", "diffusion_pytorch_model", "adapter_model")
_TRAINER_STATE = ("global_step", "epoch", "max_steps", "num_train_epochs", "train_batch_size", "best_metric")


def bin_weights(directory: Path) -> list[Path]:
    """A model directory's torch weight files: an index's shards, else one ``*.bin``/``*.pt`` file."""
    for stem in _BIN_NAMES:
        index = directory / f"{stem}.bin.index.json"
        if index.is_file():
            data = read_json(index)
            weight_map = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(weight_map, dict):
                raise FormatError("index has no weight_map of tensor → file", path=index)
            return [member_path(directory, f) for f in sorted(set(map(str, weight_map.values())))]
        for suffix in (".bin", ".pt", ".pth"):
            if (directory / f"{stem}{suffix}").is_file():
                return [directory / f"{stem}{suffix}"]
    return []


def _has_safetensors(directory: Path) -> bool:
    return any(
        (directory / f"{stem}{ext}").is_file()
        for stem in _SAFE_NAMES
        for ext in (".safetensors", ".safetensors.index.json")
    )


def open_model_dir(directory: Path) -> TensorSource | None:
    """The weights of one model directory (safetensors preferred, else ``.bin``), or None if it has none."""
    if _has_safetensors(directory):
        source: TensorSource = HuggingFaceSource(directory)
        return source
    if bin_weights(directory):
        return BinModelSource(directory)
    return None


class BinModelSource(CompositeSource):
    """A Hugging Face model directory whose weights are ``pytorch_model.bin`` (or its shards)."""

    kind = "huggingface"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        files = bin_weights(path)
        if not files:
            raise FormatError("no .bin weights in this directory", path=path)
        self.layout = "Hugging Face model (.bin weights)"
        if (path / "config.json").is_file():
            config = read_json(path / "config.json")
            self.config = config if isinstance(config, dict) else None
        for file in files:
            self.adopt("", TorchSource(file, zipped=_zipped(file)), where=file.name)


def _brief(config: dict[str, Any]) -> dict[str, Any]:
    """A component's config without private keys and long lists: what tells its architecture."""
    keep = (str, int, float, bool)
    return {
        k: v
        for k, v in config.items()
        if not k.startswith("_") and (isinstance(v, keep) or (isinstance(v, list) and len(v) <= 8))
    }


def _zipped(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


class PipelineSource(CompositeSource):
    """A diffusers pipeline: ``model_index.json`` and one folder per component; each model is an entry."""

    kind = "diffusers"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        index = read_json(path / "model_index.json")
        if not isinstance(index, dict):
            raise FormatError("model_index.json is not an object", path=path)
        self.layout = f"diffusers pipeline ({index.get('_class_name', '?')})"
        pipeline: dict[str, Any] = {k: v for k, v in index.items() if k.startswith("_")}
        components: dict[str, Any] = {}
        for name, spec in index.items():
            if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[1] is None:
                continue
            folder = member_path(path, name)
            label = f"{spec[1]} ({spec[0]})"
            child = open_model_dir(folder) if folder.is_dir() else None
            if child is None:
                components[name] = label + ("" if folder.is_dir() else ": not saved")
                configs = sorted(folder.glob("*config.json")) if folder.is_dir() else []
                config = read_json(configs[0]) if len(configs) == 1 else None
                if isinstance(config, dict):
                    self.sections[f"{name} config"] = _brief(config)
                continue
            self.adopt(name, child)
            arch = architecture_of(child.tensors.values())
            components[name] = f"{label}: {arch.parameters:,} parameters in {len(child.tensors)} tensors"
            if child.config is not None:
                self.entry_configs[name] = child.config
        self.sections["Pipeline"] = pipeline
        self.sections["Components"] = components
        for name, config in self.entry_configs.items():
            self.sections[f"{name} config"] = _brief(config)


class TrainerSource(CompositeSource):
    """A transformers Trainer ``checkpoint-N/``: model, optimizer, scheduler, RNG states and trainer state."""

    kind = "trainer"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.layout = "transformers Trainer checkpoint"
        model = open_model_dir(path)
        if model is not None:
            self.adopt("", model, where="")
            self.config = model.config
        state = read_json(path / "trainer_state.json")
        if isinstance(state, dict):
            self.sections["Trainer state"] = {k: state[k] for k in _TRAINER_STATE if k in state}
            self.values.update({k: v for k, v in self.sections["Trainer state"].items() if v is not None})
            if state.get("log_history"):
                self.sections["Trainer state"]["log_history"] = state["log_history"][-3:]
        for name, prefix in (("optimizer.pt", "optimizer"), ("scheduler.pt", "scheduler")):
            if (path / name).is_file():
                self._part(path / name, prefix)
        for rng in sorted(path.glob("rng_state*.pth")):
            self._part(rng, rng.stem.replace("rng_state", "rng"))
        folders = sorted(p.name for p in path.iterdir() if p.is_dir())
        if folders:
            self.notes.append(f"not read: {', '.join(folders)} (DeepSpeed/FSDP shards and other folders)")
        if (path / "training_args.bin").is_file():
            args = TorchSource(path / "training_args.bin", zipped=_zipped(path / "training_args.bin"))
            self.needs_code.update(args.needs_code)
            self.sections["Training arguments"] = {k: v for k, v in args.values.items() if v not in (None, "", [], {})}
            args.close()

    def _part(self, file: Path, prefix: str) -> None:
        child = TorchSource(file, zipped=_zipped(file))
        if child.tensors:
            self.adopt(prefix, child, state=True, where=file.name)
        if child.values and prefix == "scheduler":
            self.sections["Scheduler"] = dict(child.values)
        child.notes.clear()
