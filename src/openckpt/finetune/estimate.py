"""``estimate``: the memory a model needs for inference, LoRA or a full fine-tune, from its config and tensor shapes
alone (nothing is downloaded but ``config.json`` and the safetensors headers), against what is available.

Terms (bytes), with ``P`` parameters, ``T`` the trainable ones and ``e`` the bytes of ``dtype``:

* weights: ``P·e`` (LoRA adds its adapter in float32, as peft keeps it);
* gradients: ``T·e`` (full) or ``T·4`` (LoRA);
* optimizer: AdamW's two moments in float32, ``8·T``;
* activations: kept for the backward pass, per token ``e·L·(c_h·h + c_i·I + c_s·a·s)`` over the ``L`` layers
  (hidden size ``h``, feed-forward size ``I``, ``a`` heads, sequence length ``s``) plus ``e·c_v·V`` for a language
  model's logits over its vocabulary ``V`` (logits, their log-softmax and gradients); for inference, one layer's
  and the logits' transients. The shape of the formula is that of Korthikanti et al. (2022, "Reducing Activation
  Recomputation in Large Transformer Models"); the coefficients were measured on CPU with PyTorch eager kernels
  (see ``tests/finetune/test_estimate.py``, which runs real steps of BERT- and GPT-2-style models built from
  configs and compares the peak resident memory growth: each estimate is within :data:`TOLERANCE` of it);
* overhead: a fixed allowance for the framework's workspaces.

GPU kernels (fused attention, mixed precision) usually need less activation memory than this: on a GPU the total
is an upper bound. Memory available on the device that would run it: ``torch.cuda.mem_get_info`` on a GPU, else
``MemAvailable`` of ``/proc/meminfo`` (psutil elsewhere; MPS shares it). ``bench/estimate.py`` checks the estimate
against measured peaks on configurations the coefficients were not fitted on (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openckpt.finetune.facts import ModelFacts, read_facts
from openckpt.finetune.lora import HEAD_MODULES, LoraOptions, lora_parameter_count
from openckpt.finetune.model import DTYPES

__all__ = [
    "DEVICES",
    "GPUS",
    "METHODS",
    "TOLERANCE",
    "MemoryEstimate",
    "available_memory",
    "device_memory",
    "estimate",
    "gpu_memory",
    "max_positions",
    "resolve_device",
]

DEVICES = ("auto", "cpu", "cuda", "mps")

METHODS = ("inference", "lora", "full")
TOLERANCE = 0.35
"""Relative difference between an estimate and the measured peak memory growth allowed by the tests."""
GIB = 1 << 30
GPUS = {
    "T4": 16,
    "V100-16GB": 16,
    "V100-32GB": 32,
    "A10G": 24,
    "L4": 24,
    "RTX3090": 24,
    "RTX4090": 24,
    "RTX5090": 32,
    "L40S": 48,
    "A6000": 48,
    "A100-40GB": 40,
    "A100-80GB": 80,
    "H100-80GB": 80,
    "H100": 80,
    "H200": 141,
    "B200": 180,
    "MI300X": 192,
}
"""GPU names ``--gpu`` knows, with their memory in GiB (``--gpu 24GB`` names a size directly)."""

# Activation bytes per token and element: (c_h, c_i, c_s) per layer, c_v for the LM logits; measured (see above).
_TRAIN = {"full": (2.0, 4.0, 3.0), "lora": (1.0, 3.0, 3.5)}
_LOGITS = {"full": 3.7, "lora": 3.3, "inference": 1.5}
_INFER = (0.0, 9.0, 0.7)
OVERHEAD = {"full": 80 << 20, "lora": 110 << 20, "inference": 8 << 20}
"""Autograd, optimizer and peft bookkeeping and kernel workspaces: the constant term of the measured fit."""


@dataclass(frozen=True)
class MemoryEstimate:
    source: str
    method: str
    task: str
    dtype: str
    batch_size: int
    seq_len: int
    parameters: int
    trainable_parameters: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    available: int | None
    """Memory available on this machine now (bytes), None where it cannot be read."""
    gpu: str | None
    gpu_memory: int | None
    device: str = "cpu"
    """The device ``available`` was read from, with its name where known (``cuda: NVIDIA A100 …``)."""

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    @property
    def fits_here(self) -> bool | None:
        return None if self.available is None else self.total <= self.available

    @property
    def fits_gpu(self) -> bool | None:
        return None if self.gpu_memory is None else self.total <= self.gpu_memory

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "fits_here": self.fits_here, "fits_gpu": self.fits_gpu}


def gpu_memory(name: str) -> int:
    """Bytes of a GPU named in :data:`GPUS` (case-insensitive) or of a size such as ``24GB`` / ``80GiB``."""
    size = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:G|GB|GiB)\s*", name, re.IGNORECASE)
    if size:
        return int(float(size.group(1)) * GIB)
    for known, gib in GPUS.items():
        if known.lower() == name.strip().lower():
            return gib * GIB
    raise ValueError(f"unknown GPU {name!r}: give a size such as 24GB, or one of {', '.join(GPUS)}")


def available_memory() -> int | None:
    """Bytes of memory available to a new process on this machine (``MemAvailable``)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def resolve_device(device: str = "auto") -> str:
    """``auto``: cuda if a GPU is usable, else mps if available, else cpu; a named device is checked to exist."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if (device == "cuda" and not torch.cuda.is_available()) or (device == "mps" and not has_mps):
        raise ValueError(f"no {device} device is available here")
    return device


def device_memory(device: str = "auto") -> tuple[str, int | None]:
    """(device description, its free memory in bytes) — ``torch.cuda.mem_get_info`` on a GPU, RAM otherwise."""
    resolved = resolve_device(device)
    if resolved == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return f"cuda: {torch.cuda.get_device_name()}", int(free)
    return resolved, available_memory()


def max_positions(config: dict[str, Any]) -> int | None:
    """The model's maximum sequence length from its config, None if it states none."""
    try:
        return _dim(config, "max_position_embeddings", "n_positions", "n_ctx", "max_seq_len")
    except ValueError:
        return None


def _dim(config: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    text = config.get("text_config")
    if isinstance(text, dict):
        return _dim(text, *keys, default=default)
    if default is None:
        raise ValueError(f"config.json has none of {', '.join(keys)}")
    return default


def _task(config: dict[str, Any]) -> str:
    names = " ".join(str(a) for a in config.get("architectures") or [])
    return "text-classification" if "SequenceClassification" in names else "causal-lm"


def _activations(config: dict[str, Any], *, method: str, task: str, tokens: int, seq_len: int, e: int) -> int:
    h = _dim(config, "hidden_size", "n_embd", "d_model")
    layers = _dim(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _dim(config, "num_attention_heads", "n_head", "num_heads")
    inner = _dim(config, "intermediate_size", "n_inner", "ffn_dim", default=4 * h)
    vocab = _dim(config, "vocab_size")
    c_h, c_i, c_s = _INFER if method == "inference" else _TRAIN[method]
    per_layer = c_h * h + c_i * inner + c_s * heads * seq_len
    per_token = per_layer * (1 if method == "inference" else layers)
    if task == "causal-lm":
        per_token += _LOGITS[method] * vocab
    return int(e * tokens * per_token)


def _trainable(facts: ModelFacts, lora: LoraOptions) -> int:
    adapter = lora_parameter_count(facts.shapes, lora.resolved_targets(facts.model_type), lora.rank)
    head = sum(_numel(shape) for name, shape in facts.shapes.items() if name.split(".")[0] in HEAD_MODULES)
    return adapter + head


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def estimate(  # noqa: PLR0913 — public API: each keyword is a documented option (and a CLI flag)
    source: str | os.PathLike[str] | ModelFacts,
    *,
    method: str,
    dtype: str | None = None,
    batch_size: int = 1,
    seq_len: int | None = None,
    gpu: str | None = None,
    task: str | None = None,
    lora: LoraOptions | None = None,
    device: str | None = None,
) -> MemoryEstimate:
    """The memory ``method`` needs for ``source`` (a model directory, or facts read from a hub repo).

    ``dtype`` defaults to the config's (else float32), ``seq_len`` to its context length, ``task`` to what its
    ``architectures`` say (a sequence classifier, else a causal LM); LoRA uses ``lora`` (default rank and targets).
    ``available`` is the free memory of ``device`` (None: this machine's RAM; ``auto``: the device a run would use).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    facts = source if isinstance(source, ModelFacts) else read_facts(Path(source))
    config = facts.config
    dtype = dtype or str(config.get("dtype") or config.get("torch_dtype") or "float32")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    e = DTYPES[dtype]
    seq_len = seq_len or _dim(config, "max_position_embeddings", "n_positions", "n_ctx", default=512)
    task = task or _task(config)
    params = facts.parameters
    weights, gradients, optimizer, trainable = params * e, 0, 0, 0
    if method == "full":
        trainable = params
        gradients, optimizer = params * e, 8 * params
    elif method == "lora":
        trainable = _trainable(facts, lora or LoraOptions())
        weights += 4 * trainable
        gradients, optimizer = 4 * trainable, 8 * trainable
    activations = _activations(config, method=method, task=task, tokens=batch_size * seq_len, seq_len=seq_len, e=e)
    where, available = ("cpu", available_memory()) if device is None else device_memory(device)
    return MemoryEstimate(
        source=facts.source,
        method=method,
        task=task,
        dtype=dtype,
        batch_size=batch_size,
        seq_len=seq_len,
        parameters=params,
        trainable_parameters=trainable,
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        activations=activations,
        overhead=OVERHEAD[method],
        available=available,
        gpu=gpu,
        gpu_memory=gpu_memory(gpu) if gpu else None,
        device=where,
    )
