"""Sentence embeddings of an encoder checkpoint with transformers alone, pooled as its sentence-transformers
``modules.json`` says (mean pooling for a bare encoder)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from openckpt.errors import FormatError, UnsuitableModelError
from openckpt.evaluate.models import ModelKind, load_model

if TYPE_CHECKING:
    import numpy as np

__all__ = ["embed", "pooling_mode"]

_MODULES = {"Transformer", "Pooling", "Normalize"}
_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}
BATCH = 64


def pooling_mode(directory: Path) -> str:
    """``cls``, ``mean`` or ``max``: how token vectors become one sentence vector."""
    modules_path = directory / "modules.json"
    if not modules_path.is_file():
        return "mean"
    try:
        modules = json.loads(modules_path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON: {e}", path=modules_path) from e
    pooling = None
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _MODULES:
            raise UnsuitableModelError(
                f"sentence-transformers module {kind!r} is not supported (only {', '.join(sorted(_MODULES))})",
                path=directory,
            )
        if kind == "Pooling":
            pooling = directory / str(module.get("path", "")) / "config.json"
    if pooling is None or not pooling.is_file():
        return "mean"
    config = json.loads(pooling.read_bytes())
    modes = [mode for key, mode in _MODES.items() if config.get(key)]
    others = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in _MODES]
    if len(modes) != 1 or others:
        raise UnsuitableModelError(f"pooling {config} is not supported (one of cls, mean, max)", path=pooling)
    return modes[0]


def embed(directory: Path, texts: Sequence[str], *, batch_size: int = BATCH) -> np.ndarray:
    """One row per text: the encoder's pooled last hidden state (not normalised)."""
    import numpy as np
    import torch

    mode = pooling_mode(directory)
    model, tokenizer = load_model(directory, ModelKind.sentence_encoder)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if mode == "cls":
                pooled = hidden[:, 0]
            elif mode == "max":
                pooled = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            rows.append(pooled.numpy())
    return np.concatenate(rows, axis=0)
