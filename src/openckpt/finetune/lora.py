"""LoRA options with per-architecture defaults, the peft config they make, and the parameters they add."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_ALPHA", "DEFAULT_RANK", "LoraOptions", "default_targets", "lora_parameter_count", "wrap"]

DEFAULT_RANK = 8
DEFAULT_ALPHA = 16

_TARGETS: dict[str, tuple[str, ...]] = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
    "electra": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "gpt2": ("c_attn",),
    "gpt_bigcode": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "falcon": ("query_key_value",),
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "gemma2": ("q_proj", "v_proj"),
    "phi3": ("qkv_proj",),
}
"""The attention projections LoRA adapts by default (as in the LoRA paper: query and value)."""

HEAD_MODULES = ("classifier", "score")
"""Classification heads peft trains in full next to the adapter (its ``SEQ_CLS`` ``modules_to_save``)."""


@dataclass(frozen=True)
class LoraOptions:
    """LoRA rank, scaling numerator and adapted modules; ``targets`` None means :func:`default_targets`."""

    rank: int = DEFAULT_RANK
    alpha: int = DEFAULT_ALPHA
    targets: tuple[str, ...] | None = None
    dropout: float = 0.0

    def resolved_targets(self, model_type: str) -> tuple[str, ...]:
        return self.targets or default_targets(model_type)


def default_targets(model_type: str) -> tuple[str, ...]:
    """The default LoRA target modules of an architecture (``config.json``'s ``model_type``), else peft's."""
    if model_type in _TARGETS:
        return _TARGETS[model_type]
    from peft.utils import constants

    found = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    if isinstance(found, list | tuple) and found:
        return tuple(str(t) for t in found)
    raise ValueError(f"no default LoRA target modules for model_type {model_type!r}: pass --target-modules")


def _module_of(tensor: str) -> tuple[str, str]:
    module, _, kind = tensor.rpartition(".")
    return module, kind


def lora_parameter_count(shapes: Mapping[str, Sequence[int]], targets: Sequence[str], rank: int) -> int:
    """Parameters LoRA of ``rank`` adds to the 2-D ``*.weight`` tensors (name → shape) of modules named by
    ``targets`` (a module matches when its last name component is a target)."""
    total = 0
    for name, shape in shapes.items():
        module, kind = _module_of(name)
        if kind == "weight" and len(shape) == 2 and module.rpartition(".")[2] in targets:
            total += rank * (int(shape[0]) + int(shape[1]))
    return total


def wrap(model: torch.nn.Module, options: LoraOptions, *, task: str, model_type: str) -> torch.nn.Module:
    """``model`` with LoRA adapters on its target modules (only those, and a classifier head, are trainable)."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    targets = options.resolved_targets(model_type)
    conv1d = any(isinstance(m, Conv1D) for n, m in model.named_modules() if n.rpartition(".")[2] in targets)
    config = LoraConfig(
        task_type="SEQ_CLS" if task == "text-classification" else "CAUSAL_LM",
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(targets),
        fan_in_fan_out=conv1d,  # GPT-2's Conv1D stores its weight as (in, out)
    )
    wrapped: Any = get_peft_model(model, config)
    result: torch.nn.Module = wrapped
    return result
