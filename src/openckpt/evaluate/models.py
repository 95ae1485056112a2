"""Which kind of model a transformers directory holds, which bias suite fits it, and loading it offline.

The kind is read from ``config.json`` (its ``architectures``) and, for sentence-transformers models, from
``modules.json``; nothing is downloaded and no weights are read to decide it.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsuitableModelError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["ModelKind", "Suite", "detect_kind", "load_model", "require_kind"]


class Suite(StrEnum):
    """The bias suites of ``openckpt evaluate bias``."""

    fairness = "fairness"
    crows_pairs = "crows-pairs"
    weat = "weat"


class ModelKind(StrEnum):
    """What a checkpoint is, as far as bias suites care."""

    classifier = "sequence classifier"
    masked_lm = "masked language model"
    sentence_encoder = "sentence encoder"
    causal_lm = "causal language model"
    other = "other model"


SUITE_KIND = {
    Suite.fairness: ModelKind.classifier,
    Suite.crows_pairs: ModelKind.masked_lm,
    Suite.weat: ModelKind.sentence_encoder,
}
"""The one kind of model each suite measures."""

_CAUSAL = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def read_config(directory: Path) -> dict[str, Any]:
    """``config.json`` of a transformers model directory."""
    path = directory / "config.json"
    if not path.is_file():
        raise UnsuitableModelError("no config.json: not a transformers model, so no bias suite applies", path=directory)
    try:
        config = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON: {e}", path=path) from e
    if not isinstance(config, dict):
        raise FormatError("config.json must be a JSON object", path=path)
    return config


def _is_encoder_family(model_type: str) -> bool:
    """Whether transformers has a masked-LM head for ``model_type`` (BERT, RoBERTa, MPNet...: encoders)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def detect_kind(directory: Path) -> tuple[ModelKind, str]:
    """(kind, architecture name) of the model in ``directory``."""
    config = read_config(directory)
    architectures = [str(a) for a in config.get("architectures") or []]
    arch = architectures[0] if architectures else str(config.get("model_type") or "unknown")
    for name in architectures:
        if name.endswith("ForSequenceClassification"):
            return ModelKind.classifier, name
    for name in architectures:
        if name.endswith("ForMaskedLM"):
            return ModelKind.masked_lm, name
    for name in architectures:
        if name.endswith(_CAUSAL):
            return ModelKind.causal_lm, name
    if (directory / "modules.json").is_file():
        return ModelKind.sentence_encoder, arch
    bare = all(name.endswith("Model") and "For" not in name for name in architectures)
    if bare and _is_encoder_family(str(config.get("model_type") or "")):
        return ModelKind.sentence_encoder, arch
    return ModelKind.other, arch


def require_kind(directory: Path, suite: Suite) -> ModelKind:
    """The model's kind, or :class:`UnsuitableModelError` when ``suite`` does not measure that kind of model."""
    kind, arch = detect_kind(directory)
    wanted = SUITE_KIND[suite]
    if kind is not wanted:
        fits = [s.value for s, k in SUITE_KIND.items() if k is kind]
        hint = f"; use --suite {' or '.join(fits)}" if fits else "; no bias suite of openckpt measures it"
        raise UnsuitableModelError(
            f"suite {suite.value} measures a {wanted.value}, but this is a {kind.value} ({arch}){hint}", path=directory
        )
    return kind


def load_model(directory: Path, kind: ModelKind) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model in eval mode on CPU, tokenizer) of ``directory``, from local files only."""
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    classes: dict[ModelKind, Any] = {
        ModelKind.classifier: transformers.AutoModelForSequenceClassification,
        ModelKind.masked_lm: transformers.AutoModelForMaskedLM,
        ModelKind.sentence_encoder: transformers.AutoModel,
    }
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UnsuitableModelError(f"no usable tokenizer: {e}", path=directory) from e
    model = classes[kind].from_pretrained(directory, local_files_only=True)
    model.eval()
    return model, tokenizer
