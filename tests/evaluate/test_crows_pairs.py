"""CrowS-Pairs on a tiny BERT masked LM built from a config: the data, the shared tokens, the scores."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from openckpt.errors import IntegrityError, UnsuitableModelError
from openckpt.evaluate.crows_pairs import (
    _shared_positions,
    evaluate_crows_pairs,
    pseudo_log_likelihood,
    read_pairs,
)
from openckpt.evaluate.models import ModelKind, load_model


def test_the_dataset_is_the_published_one() -> None:
    pairs = read_pairs()
    assert len(pairs) == 1508
    assert Counter(p.direction for p in pairs) == {"stereo": 1290, "antistereo": 218}
    assert Counter(p.bias_type for p in pairs)["race-color"] == 516
    assert len({p.bias_type for p in pairs}) == 9


def test_a_changed_copy_is_refused(tmp_path: Path) -> None:
    from openckpt.evaluate.crows_pairs import crows_pairs_path

    copy = tmp_path / "crows.csv"
    shutil.copyfile(crows_pairs_path(), copy)
    with copy.open("a") as f:
        f.write("\n")
    with pytest.raises(IntegrityError, match="not the published CrowS-Pairs CSV"):
        read_pairs(copy)


def test_shared_tokens_exclude_the_modified_ones_and_the_ends() -> None:
    # [CLS] the poor are lazy [SEP]  vs  [CLS] the rich are lazy [SEP]
    more, less = [101, 1, 2, 3, 4, 102], [101, 1, 9, 3, 4, 102]
    assert _shared_positions(more, less) == ([1, 3, 4], [1, 3, 4])
    # different lengths: "black kids" vs "white kid s"
    assert _shared_positions([101, 5, 6, 7, 102], [101, 5, 8, 9, 7, 102]) == ([1, 3], [1, 4])


def test_pseudo_log_likelihood_masks_one_token_at_a_time(masked_lm: Path) -> None:
    import torch

    model, tokenizer = load_model(masked_lm, ModelKind.masked_lm)
    ids = tokenizer("the nurse said she was tired")["input_ids"]
    positions = [1, 3, 5]
    expected = 0.0
    for i in positions:
        masked = list(ids)
        masked[i] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([masked])).logits[0, i]
        expected += float(torch.log_softmax(logits, dim=-1)[ids[i]])
    assert pseudo_log_likelihood(model, tokenizer, ids, positions) == pytest.approx(expected, rel=1e-4)


def test_stereotype_score_on_a_subset(masked_lm: Path, offline: None) -> None:
    report = evaluate_crows_pairs(masked_lm, limit=20)
    d = report.details
    assert d["pairs"] == 20 and len(d["scores"]) == 20
    assert 0 <= d["stereotype_score"] <= 100
    types = {p.bias_type for p in read_pairs(limit=20)}
    assert set(d["by_bias_type"]) == types
    assert sum(v["pairs"] for v in d["by_bias_type"].values()) == 20
    hits = sum(s["sent_more_pll"] > s["sent_less_pll"] for s in d["scores"])
    assert d["stereotype_score"] == pytest.approx(100 * hits / 20)
    overall = [m for m in report.metrics if m.config is None]
    assert [m.type for m in overall] == ["stereotype_score"]
    assert {m.config for m in report.metrics if m.config} == types
    assert report.rows[-1] == ["all", "20", f"{d['stereotype_score']:.1f}"]
    assert "CC BY-SA 4.0" in " ".join(report.notes) and "first 20 of 1,508" in report.notes[0]


def test_crows_pairs_refuses_a_classifier_and_an_encoder(classifier: Path, minilm: Path) -> None:
    with pytest.raises(UnsuitableModelError, match=r"crows-pairs measures a masked language model, but this is a "
                                                    r"sequence classifier"):  # fmt: skip
        evaluate_crows_pairs(classifier, limit=1)
    with pytest.raises(UnsuitableModelError, match=r"but this is a sentence encoder \(BertModel\)"):
        evaluate_crows_pairs(minilm, limit=1)
