"""Loading a transformers model from a local model directory for a fine-tuning task (no remote code)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError
from openckpt.finetune.facts import load_config

if TYPE_CHECKING:
    import torch

__all__ = ["DTYPES", "TASKS", "load_model", "read_config", "torch_dtype"]

TASKS = ("text-classification", "causal-lm")
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Supported weight dtypes and their bytes per element."""


def read_config(directory: Path) -> dict[str, Any]:
    """``config.json`` of a model directory."""
    config = load_config(directory)
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise FormatError("config.json has no model_type", path=directory / "config.json")
    return config


def torch_dtype(name: str) -> torch.dtype:
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {name!r}")
    result: torch.dtype = getattr(torch, name)
    return result


def load_model(
    directory: Path, *, task: str, dtype: str = "float32", labels: Mapping[str, int] | None = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(the model in ``directory`` with the head ``task`` needs, its config). With ``labels`` (name → id), a
    classification head of that many outputs replaces one of another size."""
    import transformers

    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    config = read_config(directory)
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "trust_remote_code": False}
    if task == "causal-lm":
        auto: Any = transformers.AutoModelForCausalLM
    else:
        auto = transformers.AutoModelForSequenceClassification
        if labels is not None:
            kwargs.update(
                num_labels=len(labels),
                label2id=dict(labels),
                ignore_mismatched_sizes=True,
                id2label={i: name for name, i in labels.items()},
            )
    model: Any = auto.from_pretrained(directory, **kwargs)
    if task == "text-classification" and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = config.get("eos_token_id") if isinstance(config.get("eos_token_id"), int) else 0
    loaded: torch.nn.Module = model
    return loaded, config
