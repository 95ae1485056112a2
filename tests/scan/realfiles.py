"""A corpus of tiny random-weight files written by the field's own libraries, and a malicious twin of each code path.

``build_corpus(root)`` writes every :class:`RealFile` under ``root`` (a few seconds; nothing is downloaded) and
returns them with the verdict the scanner must reach over each entry (a file or a directory): ``clean``, ``opaque``,
``needs_code`` or ``malicious``. The tests of the scanner, the hub gate and ``inspect``/``convert`` share it through
the session fixture ``real_corpus`` of ``tests/conftest.py`` (name → :class:`RealFile`).

Which library writes what:

- transformers ``save_pretrained`` (safetensors) and a ``Trainer`` run of 2 steps (``checkpoint-2/``). transformers 5
  no longer writes ``pytorch_model.bin``; the ``.bin`` twin is ``torch.save(model.state_dict())``, byte for byte what
  ``save_pretrained(safe_serialization=False)`` wrote before.
- diffusers models and a pipeline, both formats; stable-baselines3 PPO/DQN on gymnasium CartPole; pytorch_lightning
  ``Trainer.fit`` for 2 steps; ``torch.jit.script``/``torch.export``/``torch.distributed.checkpoint.save`` (no process
  group); ``onnx.helper``; ``gguf.GGUFWriter``; Keras 3 on the torch backend; scikit-learn + joblib; numpy; OpenVINO
  (``openvino.save_model``); tarfile, zipfile, py7zr.
- timm and ultralytics import torchvision, and PyPI's torchvision does not import beside the pinned torch 2.13.0
  (``operator torchvision::nms does not exist``). Their files are built without the library: the exact dict layout
  that timm's ``CheckpointSaver._save`` and ultralytics' ``save_model`` write, with the module tree pickled under the
  real class names (stand-in ``nn.Module`` classes registered under ``ultralytics.*`` in ``sys.modules`` only while
  ``torch.save`` runs), so the pickles name the same globals in the same structure; the libraries are never imported.
- The openai-whisper checkpoint is its documented layout (``dims`` + ``model_state_dict``) written by ``torch.save``;
  word2vec's binary format and random bytes stand for opaque data.

Malicious twins are made from the benign files by rewriting bytes: a pickle gets ``os.system`` called before its own
opcodes, an SB3 ``:serialized:`` field gets a pickle calling ``os.system``, a GGUF gets a Jinja sandbox escape, a
Keras config gets a Lambda layer. Nothing here ever loads a twin.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import struct
import sys
import tarfile
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BUILDERS", "PAYLOAD", "RealFile", "build_corpus", "inject", "rewrite_zip"]

PAYLOAD = b"cos\nsystem\n(X\x0a\x00\x00\x00echo pwnedtR"
"""``os.system("echo pwned")`` as protocol-1+ opcodes (GLOBAL, MARK, BINUNICODE, TUPLE, REDUCE); never run."""


@dataclass(frozen=True)
class RealFile:
    """One corpus entry: a file or a directory, the field and library that write it, and the expected verdict."""

    name: str
    path: Path
    field: str
    library: str
    expected: str

    @property
    def malicious(self) -> bool:
        return self.expected == "malicious"


Builder = Callable[[Path], Path]


@dataclass(frozen=True)
class Spec:
    name: str
    field: str
    library: str
    expected: str
    build: Builder


BUILDERS: list[Spec] = []


def _spec(name: str, field: str, library: str, expected: str) -> Callable[[Builder], Builder]:
    def add(build: Builder) -> Builder:
        BUILDERS.append(Spec(name, field, library, expected, build))
        return build

    return add


def build_corpus(root: Path, *, only: set[str] | None = None) -> list[RealFile]:
    """Build every entry (or those named in ``only``) under ``root``; a builder that fails raises."""
    for field in ("nlp", "vision", "speech", "rl", "formats", "containers"):
        (root / field).mkdir(parents=True, exist_ok=True)
    out = []
    with _quiet():
        for spec in BUILDERS:
            if only is not None and spec.name not in only:
                continue
            path = spec.build(root)
            out.append(RealFile(spec.name, path, spec.field, spec.library, spec.expected))
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Build offline and quietly; the environment is given back as it was, so later tests never inherit it."""
    saved = dict(os.environ)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("WANDB_DISABLED", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # Trainer prints its logs
            warnings.simplefilter("ignore")
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---- byte surgery for the twins ---------------------------------------------------------------------------------


def inject(pickle_bytes: bytes) -> bytes:
    """The pickle with ``os.system("echo pwned")`` called (and its result popped) before its own opcodes."""
    head = 2 if pickle_bytes[:1] == b"\x80" else 0
    return pickle_bytes[:head] + PAYLOAD + b"0" + pickle_bytes[head:]


def rewrite_zip(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a zip member by member (same names and order), replacing each member's bytes with ``change``'s result
    when it is not ``None``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            new = change(info.filename, data)
            zout.writestr(info, data if new is None else new)
    return dst


def _inject_member(suffix: str) -> Callable[[str, bytes], bytes | None]:
    return lambda name, data: inject(data) if name.endswith(suffix) else None


def _torch() -> Any:
    import torch

    torch.manual_seed(0)
    return torch


# ---- NLP ----------------------------------------------------------------------------------------------------------


def _bert() -> Any:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    _torch()
    return BertModel(config)


@_spec("transformers-safetensors", "nlp", "transformers", "clean")
def _hf_safetensors(root: Path) -> Path:
    path = root / "nlp" / "bert-safetensors"
    _bert().save_pretrained(path)
    return path


@_spec("transformers-bin", "nlp", "transformers", "clean")
def _hf_bin(root: Path) -> Path:
    torch = _torch()
    path = root / "nlp" / "bert-bin"
    model = _bert()
    model.config.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    return path


@_spec("transformers-bin-legacy", "nlp", "transformers", "clean")
def _hf_bin_legacy(root: Path) -> Path:
    """``pytorch_model.bin`` as torch < 1.6 wrote it (the legacy five-pickle format many older repos still hold)."""
    torch = _torch()
    path = root / "nlp" / "bert-bin-legacy"
    model = _bert()
    model.config.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    return path


@_spec("transformers-bin-malicious", "nlp", "transformers", "malicious")
def _hf_bin_evil(root: Path) -> Path:
    src = _hf_bin(root) / "pytorch_model.bin"
    return rewrite_zip(src, root / "nlp" / "pytorch_model-evil.bin", _inject_member("/data.pkl"))


@_spec("transformers-trainer-checkpoint", "nlp", "transformers", "needs_code")
def _trainer(root: Path) -> Path:
    torch = _torch()
    from transformers import Trainer, TrainingArguments

    out = root / "nlp" / "trainer"
    data = [{"input_ids": torch.randint(0, 64, (8,)), "labels": torch.randint(0, 64, (8,))} for _ in range(4)]

    class Wrapped(torch.nn.Module):  # a loss head: Trainer needs one
        def __init__(self) -> None:
            super().__init__()
            self.bert = _bert()
            self.head = torch.nn.Linear(16, 64)

        def forward(self, input_ids: Any, labels: Any) -> dict[str, Any]:
            logits = self.head(self.bert(input_ids=input_ids).last_hidden_state)
            return {"loss": torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())}

    args = TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        save_steps=2,
        per_device_train_batch_size=2,
        report_to=[],
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(model=Wrapped(), args=args, train_dataset=data).train()
    return out / "checkpoint-2"


@_spec("transformers-training-args-malicious", "nlp", "transformers", "malicious")
def _trainer_evil(root: Path) -> Path:
    src = root / "nlp" / "trainer" / "checkpoint-2" / "training_args.bin"
    if not src.exists():
        _trainer(root)
    return rewrite_zip(src, root / "nlp" / "training_args-evil.bin", _inject_member("/data.pkl"))


# ---- vision -------------------------------------------------------------------------------------------------------


def _unet() -> Any:
    from diffusers import UNet2DModel

    _torch()
    return UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )


@_spec("diffusers-unet-safetensors", "vision", "diffusers", "clean")
def _diffusers_unet(root: Path) -> Path:
    path = root / "vision" / "unet-safetensors"
    _unet().save_pretrained(path)
    return path


@_spec("diffusers-vae-bin", "vision", "diffusers", "clean")
def _diffusers_vae(root: Path) -> Path:
    from diffusers import AutoencoderKL

    _torch()
    path = root / "vision" / "vae-bin"
    vae = AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2, sample_size=8)
    vae.save_pretrained(path, safe_serialization=False)
    return path


def _pipeline(root: Path, name: str, *, safe: bool) -> Path:
    from diffusers import DDPMPipeline, DDPMScheduler

    path = root / "vision" / name
    DDPMPipeline(unet=_unet(), scheduler=DDPMScheduler(num_train_timesteps=10)).save_pretrained(
        path, safe_serialization=safe
    )
    return path


@_spec("diffusers-pipeline-safetensors", "vision", "diffusers", "clean")
def _pipeline_st(root: Path) -> Path:
    return _pipeline(root, "ddpm-pipeline-safetensors", safe=True)


@_spec("diffusers-pipeline-bin", "vision", "diffusers", "clean")
def _pipeline_bin(root: Path) -> Path:
    return _pipeline(root, "ddpm-pipeline-bin", safe=False)


def _resnet_state(torch: Any) -> dict[str, Any]:
    """A timm ``resnet``-shaped state dict (what ``model.state_dict()`` holds)."""
    state: dict[str, Any] = {"conv1.weight": torch.randn(8, 3, 3, 3)}
    for prefix in ("bn1", "layer1.0.bn1"):
        state.update({f"{prefix}.{k}": torch.rand(8) for k in ("weight", "bias", "running_mean", "running_var")})
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(2)
    state["layer1.0.conv1.weight"] = torch.randn(8, 8, 3, 3)
    state.update({"fc.weight": torch.randn(10, 8), "fc.bias": torch.zeros(10)})
    return state


@_spec("timm-state-dict", "vision", "timm", "clean")
def _timm_state(root: Path) -> Path:
    torch = _torch()
    path = root / "vision" / "timm-resnet.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_resnet_state(torch), path)
    return path


@_spec("timm-checkpoint-saver", "vision", "timm", "clean")
def _timm_saver(root: Path) -> Path:
    """What ``timm.utils.CheckpointSaver._save`` writes for ``train.py`` (args is its argparse namespace)."""
    import argparse

    torch = _torch()
    model = torch.nn.Linear(8, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    args = argparse.Namespace(
        model="resnet18",
        pretrained=False,
        num_classes=10,
        img_size=None,
        input_size=None,
        mean=None,
        std=None,
        batch_size=2,
        opt="sgd",
        opt_eps=None,
        momentum=0.9,
        weight_decay=2e-5,
        lr=0.1,
        sched="cosine",
        epochs=2,
        smoothing=0.1,
        aa=None,
        scale=[0.08, 1.0],
        ratio=[3 / 4, 4 / 3],
        amp=False,
        device="cpu",
        distributed=False,
        world_size=1,
        rank=0,
        prefetcher=False,
        model_kwargs={},
        output="",
    )
    state = {
        "epoch": 1,
        "arch": "resnet18",
        "state_dict": _resnet_state(torch),
        "optimizer": optimizer.state_dict(),
        "version": 2,
        "args": args,
        "metric": 12.5,
    }
    path = root / "vision" / "timm-train" / "checkpoint-1.pth.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


_YOLO_CLASSES = {
    "ultralytics.nn.tasks": ["DetectionModel"],
    "ultralytics.nn.modules.conv": ["Conv", "Concat"],
    "ultralytics.nn.modules.block": ["C2f", "Bottleneck", "SPPF", "DFL"],
    "ultralytics.nn.modules.head": ["Detect"],
}


@contextlib.contextmanager
def _standins(torch: Any, classes: dict[str, list[str]]) -> Iterator[dict[str, type]]:
    """``nn.Module`` stand-ins registered under the real module names while ``torch.save`` pickles them."""
    made: dict[str, type] = {}
    added: list[str] = []
    for module, names in classes.items():
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        for cls_name in names:
            cls = type(cls_name, (torch.nn.Module,), {"__module__": module, "__qualname__": cls_name})
            setattr(sys.modules[module], cls_name, cls)
            made[cls_name] = cls
    try:
        yield made
    finally:
        for name in reversed(added):
            del sys.modules[name]


def _conv(torch: Any, c: dict[str, type], cin: int, cout: int) -> Any:
    m = c["Conv"]()
    m.conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    m.bn = torch.nn.BatchNorm2d(cout)
    m.act = torch.nn.SiLU()
    return m


def _yolo_model(torch: Any, c: dict[str, type]) -> Any:
    c2f = c["C2f"]()
    c2f.cv1, c2f.cv2 = _conv(torch, c, 8, 8), _conv(torch, c, 12, 8)
    bottleneck = c["Bottleneck"]()
    bottleneck.cv1, bottleneck.cv2, bottleneck.add = _conv(torch, c, 4, 4), _conv(torch, c, 4, 4), True
    c2f.m = torch.nn.ModuleList([bottleneck])
    sppf = c["SPPF"]()
    sppf.cv1, sppf.cv2, sppf.m = _conv(torch, c, 8, 4), _conv(torch, c, 16, 8), torch.nn.MaxPool2d(5, 1, 2)
    concat = c["Concat"]()
    concat.d = 1
    detect = c["Detect"]()
    detect.nc, detect.nl, detect.reg_max, detect.stride = 2, 1, 16, torch.tensor([8.0])
    detect.cv2 = torch.nn.ModuleList([torch.nn.Sequential(_conv(torch, c, 8, 8), torch.nn.Conv2d(8, 64, 1))])
    detect.cv3 = torch.nn.ModuleList([torch.nn.Sequential(_conv(torch, c, 8, 8), torch.nn.Conv2d(8, 2, 1))])
    dfl = c["DFL"]()
    dfl.conv = torch.nn.Conv2d(16, 1, 1, bias=False).requires_grad_(False)
    detect.dfl = dfl
    layers = [_conv(torch, c, 3, 8), c2f, sppf, torch.nn.Upsample(scale_factor=2.0), concat, detect]
    for i, layer in enumerate(layers):
        layer.i, layer.f, layer.type, layer.np = i, -1, type(layer).__module__ + "." + type(layer).__name__, 0
    model = c["DetectionModel"]()
    model.model = torch.nn.Sequential(*layers)
    model.yaml = {
        "nc": 2,
        "scales": {"n": [0.33, 0.25, 1024]},
        "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "C2f", [8]]],
        "head": [[-1, 1, "SPPF", [8, 5]], [[-1], 1, "Detect", ["nc"]]],
        "scale": "n",
        "yaml_file": "yolov8n.yaml",
        "ch": 3,
    }
    model.save, model.stride, model.names = [4], torch.tensor([8.0]), {0: "cat", 1: "dog"}
    model.inplace, model.end2end = True, False
    model.args = {"task": "detect", "imgsz": 64, "epochs": 1}
    model.pt_path, model.task = "yolov8n.yaml", "detect"
    return model


@_spec("ultralytics-yolo", "vision", "ultralytics", "needs_code")
def _yolo(root: Path) -> Path:
    """What ultralytics' ``BaseTrainer.save_model`` + ``strip_optimizer`` write for a model built from a yaml."""
    torch = _torch()
    path = root / "vision" / "yolov8n.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _standins(torch, _YOLO_CLASSES) as classes:
        ckpt = {
            "date": "2026-12-07T10:00:00",
            "version": "8.4.190",
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com",
            "epoch": -1,
            "best_fitness": None,
            "model": _yolo_model(torch, classes).half(),
            "ema": None,
            "updates": None,
            "optimizer": None,
            "train_args": {"model": "yolov8n.yaml", "data": "coco8.yaml", "epochs": 1, "imgsz": 64, "batch": 2},
            "train_metrics": {"metrics/mAP50(B)": 0.0},
            "train_results": None,
        }
        torch.save(ckpt, path)
    return path


@_spec("ultralytics-yolo-malicious", "vision", "ultralytics", "malicious")
def _yolo_evil(root: Path) -> Path:
    return rewrite_zip(_yolo(root), root / "vision" / "yolov8n-evil.pt", _inject_member("/data.pkl"))


def _lightning_module(torch: Any) -> Any:
    import pytorch_lightning as pl

    class TinyRegressor(pl.LightningModule):
        def __init__(self, width: int = 4, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(width, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return TinyRegressor()


@_spec("lightning-trainer-ckpt", "vision", "pytorch_lightning", "clean")
def _lightning(root: Path) -> Path:
    """``Trainer.fit`` for 2 steps with a ``ModelCheckpoint`` callback, then the last ``.ckpt``."""
    torch = _torch()
    import logging

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    out = root / "vision" / "lightning"
    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=out, filename="last")
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint],
        default_root_dir=out,
    )
    trainer.fit(_lightning_module(torch), data)
    return out / "last.ckpt"


@_spec("lightning-trainer-ckpt-malicious", "vision", "pytorch_lightning", "malicious")
def _lightning_evil(root: Path) -> Path:
    src = root / "vision" / "lightning" / "last.ckpt"
    if not src.exists():
        _lightning(root)
    return rewrite_zip(src, root / "vision" / "lightning-evil.ckpt", _inject_member("/data.pkl"))


def _sd_state(torch: Any) -> dict[str, Any]:
    state = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(8, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": torch.zeros(8),
        "first_stage_model.encoder.conv_in.weight": torch.randn(8, 3, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(8).unsqueeze(0),
        "model_ema.num_updates": torch.tensor(5, dtype=torch.int32),
    }
    return state


@_spec("stable-diffusion-1x-ckpt", "vision", "pytorch_lightning", "needs_code")
def _sd_ckpt(root: Path) -> Path:
    """The SD-1.x layout: Lightning 1.x put the ``ModelCheckpoint`` class itself in ``callbacks`` (a pickled global)."""
    torch = _torch()
    import numpy as np
    from pytorch_lightning.callbacks import ModelCheckpoint

    ckpt = {
        "epoch": 6,
        "global_step": 470000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": _sd_state(torch),
        "callbacks": {
            ModelCheckpoint: {
                "monitor": None,
                "best_model_score": np.float64(0.12),
                "best_model_path": "/logs/last.ckpt",
                "current_score": None,
                "dirpath": "/logs/checkpoints",
            }
        },
    }
    path = root / "vision" / "sd-v1-tiny.ckpt"
    torch.save(ckpt, path)
    return path


@_spec("stable-diffusion-1x-ckpt-malicious", "vision", "pytorch_lightning", "malicious")
def _sd_ckpt_evil(root: Path) -> Path:
    return rewrite_zip(_sd_ckpt(root), root / "vision" / "sd-v1-tiny-evil.ckpt", _inject_member("/data.pkl"))


# ---- speech -------------------------------------------------------------------------------------------------------


@_spec("whisper-checkpoint", "speech", "openai-whisper", "clean")
def _whisper(root: Path) -> Path:
    torch = _torch()
    dims = {
        "n_mels": 80,
        "n_audio_ctx": 8,
        "n_audio_state": 8,
        "n_audio_head": 2,
        "n_audio_layer": 1,
        "n_vocab": 32,
        "n_text_ctx": 8,
        "n_text_state": 8,
        "n_text_head": 2,
        "n_text_layer": 1,
    }
    state = {
        "encoder.conv1.weight": torch.randn(8, 80, 3),
        "encoder.conv1.bias": torch.zeros(8),
        "decoder.token_embedding.weight": torch.randn(32, 8),
        "decoder.ln.weight": torch.ones(8),
    }
    path = root / "speech" / "whisper-tiny.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims, "model_state_dict": state}, path)
    return path


def _scripted(torch: Any) -> Any:
    class Vad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(4, 2)
            self.threshold = 0.5

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (self.proj(x).sigmoid() > self.threshold).float()

    return torch.jit.script(Vad())


@_spec("torchscript-module", "speech", "torch.jit", "needs_code")
def _torchscript(root: Path) -> Path:
    torch = _torch()
    path = root / "speech" / "silero-like-vad.jit"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(_scripted(torch), str(path))
    return path


@_spec("torchscript-module-malicious", "speech", "torch.jit", "malicious")
def _torchscript_evil(root: Path) -> Path:
    return rewrite_zip(_torchscript(root), root / "speech" / "vad-evil.jit", _inject_member("/constants.pkl"))


# ---- RL -----------------------------------------------------------------------------------------------------------


def _sb3(root: Path, algo: str) -> Path:
    _torch()
    import stable_baselines3 as sb3

    path = root / "rl" / f"{algo.lower()}-cartpole.zip"
    kwargs: dict[str, Any] = {"policy_kwargs": {"net_arch": [8]}, "device": "cpu", "seed": 0}
    if algo == "PPO":
        kwargs.update(n_steps=16, batch_size=16)
    else:
        kwargs.update(buffer_size=64, learning_starts=0)
    model = getattr(sb3, algo)("MlpPolicy", "CartPole-v1", **kwargs)
    model.learn(total_timesteps=16)
    model.save(path)
    return path


@_spec("sb3-ppo", "rl", "stable-baselines3", "needs_code")
def _ppo(root: Path) -> Path:
    return _sb3(root, "PPO")


@_spec("sb3-dqn", "rl", "stable-baselines3", "needs_code")
def _dqn(root: Path) -> Path:
    return _sb3(root, "DQN")


def _evil_serialized(name: str, data: bytes) -> bytes | None:
    if name != "data":
        return None
    doc = json.loads(data)
    payload = b"\x80\x04" + PAYLOAD + b"."
    doc["lr_schedule"][":serialized:"] = base64.b64encode(payload).decode()
    return json.dumps(doc, indent=4).encode()


@_spec("sb3-serialized-malicious", "rl", "stable-baselines3", "malicious")
def _ppo_evil(root: Path) -> Path:
    src = root / "rl" / "ppo-cartpole.zip"
    if not src.exists():
        _ppo(root)
    return rewrite_zip(src, root / "rl" / "ppo-serialized-evil.zip", _evil_serialized)


@_spec("sb3-policy-pth-malicious", "rl", "stable-baselines3", "malicious")
def _dqn_evil(root: Path) -> Path:
    src = root / "rl" / "dqn-cartpole.zip"
    if not src.exists():
        _dqn(root)

    def change(name: str, data: bytes) -> bytes | None:
        if name != "policy.pth":
            return None
        inner = root / "rl" / "policy.pth"
        inner.write_bytes(data)
        evil = rewrite_zip(inner, root / "rl" / "policy-evil.pth", _inject_member("/data.pkl")).read_bytes()
        inner.unlink()
        (root / "rl" / "policy-evil.pth").unlink()
        return evil

    return rewrite_zip(src, root / "rl" / "dqn-policy-evil.zip", change)


@_spec("policy-state-dict", "rl", "torch", "clean")
def _policy_state(root: Path) -> Path:
    torch = _torch()
    policy = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    path = root / "rl" / "policy.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(policy.state_dict(), path)
    return path


# ---- formats around them ------------------------------------------------------------------------------------------


@_spec("torch-export-pt2", "formats", "torch.export", "clean")
def _export(root: Path) -> Path:
    torch = _torch()
    model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU())
    path = root / "formats" / "exported.pt2"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(torch.export.export(model, (torch.randn(1, 4),)), str(path))
    return path


@_spec("dcp-directory", "formats", "torch.distributed.checkpoint", "clean")
def _dcp(root: Path) -> Path:
    torch = _torch()
    import torch.distributed.checkpoint as dcp

    path = root / "formats" / "dcp"
    model = torch.nn.Linear(4, 2)
    state = {"model": model.state_dict(), "step": 3, "extra": {"lr": 0.1, "names": ["a", "b"]}}
    dcp.save(state, checkpoint_id=str(path), no_dist=True)
    return path


@_spec("dcp-metadata-malicious", "formats", "torch.distributed.checkpoint", "malicious")
def _dcp_evil(root: Path) -> Path:
    src = root / "formats" / "dcp"
    if not src.exists():
        _dcp(root)
    out = root / "formats" / "dcp-evil"
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        data = item.read_bytes()
        (out / item.name).write_bytes(inject(data) if item.name == ".metadata" else data)
    return out


@_spec("onnx-model", "formats", "onnx", "opaque")
def _onnx(root: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    path = root / "formats" / "onnx" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    return path.parent


def _gguf(path: Path, template: str) -> Path:
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@_spec("gguf-model", "formats", "gguf", "clean")
def _gguf_ok(root: Path) -> Path:
    template = (
        "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return _gguf(root / "formats" / "tiny.gguf", template)


@_spec("gguf-template-malicious", "formats", "gguf", "malicious")
def _gguf_evil(root: Path) -> Path:
    template = "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('echo pwned').read() }}"
    return _gguf(root / "formats" / "tiny-evil.gguf", template)


def _keras_model() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])


@_spec("keras-v3", "formats", "keras", "clean")
def _keras(root: Path) -> Path:
    path = root / "formats" / "tiny.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    _keras_model().save(path)
    return path


@_spec("keras-h5", "formats", "keras", "clean")
def _keras_h5(root: Path) -> Path:
    path = root / "formats" / "tiny.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    _keras_model().save(path)
    return path


_LAMBDA = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "registered_name": None,
    "config": {
        "name": "lambda",
        "trainable": True,
        "dtype": "float32",
        "arguments": {},
        "function": {
            "class_name": "__lambda__",
            "config": {
                "code": base64.b64encode(b"\xe3" + b"\x00" * 15 + b"os.system('echo pwned')").decode(),
                "defaults": None,
                "closure": None,
            },
        },
    },
}


@_spec("keras-lambda-malicious", "formats", "keras", "malicious")
def _keras_evil(root: Path) -> Path:
    def change(name: str, data: bytes) -> bytes | None:
        if name != "config.json":
            return None
        config = json.loads(data)
        config["config"]["layers"].append(_LAMBDA)
        return json.dumps(config).encode()

    return rewrite_zip(_keras(root), root / "formats" / "tiny-evil.keras", change)


@_spec("keras-h5-lambda-malicious", "formats", "keras", "malicious")
def _keras_h5_evil(root: Path) -> Path:
    import shutil

    import h5py

    path = root / "formats" / "tiny-evil.h5"
    shutil.copyfile(_keras_h5(root), path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"].append(_LAMBDA)
        f.attrs["model_config"] = json.dumps(config)
    return path


def _sklearn_model() -> Any:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    return LogisticRegression().fit(rng.standard_normal((16, 3)), rng.integers(0, 2, 16))


@_spec("sklearn-joblib", "formats", "scikit-learn", "clean")
def _joblib(root: Path) -> Path:
    import joblib

    path = root / "formats" / "sklearn-model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(_sklearn_model(), path)
    return path


@_spec("sklearn-joblib-compressed", "formats", "scikit-learn", "clean")
def _joblib_z(root: Path) -> Path:
    import joblib

    path = root / "formats" / "sklearn-model.joblib.z"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(_sklearn_model(), path, compress=3)
    return path


@_spec("sklearn-joblib-malicious", "formats", "scikit-learn", "malicious")
def _joblib_evil(root: Path) -> Path:
    path = root / "formats" / "sklearn-model-evil.joblib"
    path.write_bytes(inject(_joblib(root).read_bytes()))
    return path


@_spec("numpy-npz", "formats", "numpy", "clean")
def _npz(root: Path) -> Path:
    import numpy as np

    path = root / "formats" / "arrays.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(path, weight=rng.standard_normal((4, 4)).astype(np.float32), step=np.int64(3))
    return path


@_spec("numpy-npz-object-malicious", "formats", "numpy", "malicious")
def _npz_evil(root: Path) -> Path:
    """An object array whose pickle calls ``os.system`` (what ``np.load(allow_pickle=True)`` would run)."""
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\x80\x02" + PAYLOAD + b"."
    path = root / "formats" / "arrays-evil.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weight.npy", npy)
    return path


@_spec("openvino-ir", "formats", "openvino", "opaque")
def _openvino(root: Path) -> Path:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 4], np.float32, name="x")
    weight = ops.constant(np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32))
    model = ov.Model([ops.relu(ops.matmul(x, weight, False, False))], [x], "tiny")
    path = root / "formats" / "openvino"
    path.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path / "model.xml"), compress_to_fp16=False)
    return path


@_spec("word2vec-binary", "formats", "word2vec", "opaque")
def _word2vec(root: Path) -> Path:
    """word2vec's C binary format (``gensim`` ``save_word2vec_format(binary=True)``): a text header, then per word
    its text, a space and ``dim`` float32s."""
    import numpy as np

    rng = np.random.default_rng(0)
    words = ["the", "model", "weights", "scan"]
    body = b"".join(w.encode() + b" " + rng.standard_normal(4).astype("<f4").tobytes() for w in words)
    path = root / "formats" / "vectors.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"{len(words)} 4\n".encode() + body)
    return path


@_spec("fasttext-binary", "formats", "fasttext", "opaque")
def _fasttext(root: Path) -> Path:
    """fastText's ``.bin`` layout (``FastText::saveModel``): magic and version int32s, the ``Args`` block, the
    dictionary (sizes, then each word as NUL-terminated text, count and type), then the input and output matrices
    (int64 rows and columns, float32 data)."""
    import numpy as np

    rng = np.random.default_rng(0)
    dim, words = 4, [b"model", b"weights", b"</s>"]
    args = struct.pack("<12id", dim, 5, 5, 1, 5, 1, 0, 1, 2000000, 3, 6, 1, 1e-4)  # dim, ws, epoch, minCount, ...
    vocab = struct.pack("<iiqq", len(words), len(words), sum(range(len(words))), -1)
    vocab += b"".join(w + b"\x00" + struct.pack("<qb", i + 1, 0) for i, w in enumerate(words))
    rows = len(words) + 16
    matrix = struct.pack("<qq", rows, dim) + rng.standard_normal((rows, dim)).astype("<f4").tobytes()
    out = struct.pack("<qq", len(words), dim) + rng.standard_normal((len(words), dim)).astype("<f4").tobytes()
    path = root / "formats" / "cc.tiny.bin"
    path.write_bytes(struct.pack("<ii", 793712314, 12) + args + vocab + b"\x00" + matrix + b"\x00" + out)
    return path


@_spec("random-bytes", "formats", "os.urandom", "opaque")
def _random(root: Path) -> Path:
    import numpy as np

    path = root / "formats" / "random.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    return path


# ---- containers ---------------------------------------------------------------------------------------------------


def _tar(path: Path, files: dict[str, Path]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, src in files.items():
            t.add(src, arcname=name)
    return path


@_spec("tar-container", "containers", "tarfile", "clean")
def _tar_ok(root: Path) -> Path:
    src = root / "nlp" / "bert-bin"
    if not src.exists():
        _hf_bin(root)
    return _tar(root / "containers" / "bert-bin.tar.gz", {"bert-bin": src}) if _mkdir(root) else root


@_spec("tar-container-malicious", "containers", "tarfile", "malicious")
def _tar_evil(root: Path) -> Path:
    _mkdir(root)
    return _tar(root / "containers" / "evil.tar.gz", {"model/pytorch_model.bin": _hf_bin_evil(root)})


@_spec("zip-container", "containers", "zipfile", "clean")
def _zip_ok(root: Path) -> Path:
    _mkdir(root)
    path = root / "containers" / "sklearn.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(_joblib(root), "model/sklearn-model.joblib")
    return path


@_spec("zip-container-malicious", "containers", "zipfile", "malicious")
def _zip_evil(root: Path) -> Path:
    _mkdir(root)
    path = root / "containers" / "sklearn-evil.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(_joblib_evil(root), "model/sklearn-model.joblib")
    return path


def _7z(path: Path, files: dict[str, Path]) -> Path:
    import py7zr

    with py7zr.SevenZipFile(path, "w") as z:
        for name, src in files.items():
            z.write(src, name)
    return path


@_spec("7z-container", "containers", "py7zr", "clean")
def _7z_ok(root: Path) -> Path:
    _mkdir(root)
    return _7z(root / "containers" / "whisper.7z", {"whisper-tiny.pt": _whisper(root)})


@_spec("7z-container-malicious", "containers", "py7zr", "malicious")
def _7z_evil(root: Path) -> Path:
    _mkdir(root)
    return _7z(root / "containers" / "evil.7z", {"model.ckpt": _sd_ckpt_evil(root)})


def _mkdir(root: Path) -> bool:
    (root / "containers").mkdir(parents=True, exist_ok=True)
    return True
