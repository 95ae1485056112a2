"""Which kind of model a directory holds, from its config alone, and which suite fits it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openckpt.errors import UnsuitableModelError
from openckpt.evaluate.models import ModelKind, Suite, detect_kind, require_kind


def config_dir(tmp_path: Path, name: str, config: dict[str, object]) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_kinds(tmp_path: Path, classifier: Path, masked_lm: Path, minilm: Path) -> None:
    assert detect_kind(classifier) == (ModelKind.classifier, "BertForSequenceClassification")
    assert detect_kind(masked_lm) == (ModelKind.masked_lm, "BertForMaskedLM")
    assert detect_kind(minilm) == (ModelKind.sentence_encoder, "BertModel")
    gpt2 = config_dir(tmp_path, "gpt2", {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    assert detect_kind(gpt2) == (ModelKind.causal_lm, "GPT2LMHeadModel")
    bare_bert = config_dir(tmp_path, "bert", {"model_type": "bert", "architectures": ["BertModel"]})
    assert detect_kind(bare_bert)[0] is ModelKind.sentence_encoder
    bare_gpt2 = config_dir(tmp_path, "gpt2-bare", {"model_type": "gpt2", "architectures": ["GPT2Model"]})
    assert detect_kind(bare_gpt2)[0] is ModelKind.other


@pytest.mark.parametrize("suite", list(Suite))
def test_no_suite_measures_a_causal_lm(tmp_path: Path, suite: Suite) -> None:
    gpt2 = config_dir(tmp_path, "gpt2", {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(UnsuitableModelError, match=r"this is a causal language model \(GPT2LMHeadModel\); no bias "
                                                    r"suite of openckpt measures it"):  # fmt: skip
        require_kind(gpt2, suite)


def test_a_directory_without_config_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(UnsuitableModelError, match=r"no config\.json: not a transformers model"):
        detect_kind(tmp_path)
