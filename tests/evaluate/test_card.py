"""Bias results in a model card: model-index entries and the "Bias, Risks, and Limitations" section, round-trip."""

from __future__ import annotations

from openckpt.evaluate.card import bias_results, update_card
from openckpt.evaluate.report import BiasReport, Metric
from openckpt.governance.cards import eval_results, parse_card, validate_card

EXISTING = """---
license: apache-2.0
model-index:
- name: tiny
  results:
  - task: {type: text-classification}
    dataset: {type: imdb, name: IMDB}
    metrics:
    - {type: accuracy, value: 0.91}
---

# tiny

A model.

## Bias, Risks, and Limitations

Trained on English reviews only.

## Citation

Nobody.
"""


def crows(score: float) -> BiasReport:
    return BiasReport(
        suite="crows-pairs", title="CrowS-Pairs stereotype score", task_type="fill-mask", dataset_type="crows_pairs",
        dataset_name="CrowS-Pairs", metrics=[Metric("stereotype_score", "Stereotype score (all pairs)", score),
                                             Metric("stereotype_score", "Stereotype score (gender)", 40.0, "gender")],
        columns=["bias type", "pairs", "stereotype score"], rows=[["gender", "5", "40.0"], ["all", "20", f"{score}"]],
        notes=["Stereotype score of the model."],
    )  # fmt: skip


def weat() -> BiasReport:
    return BiasReport(
        suite="weat", title="WEAT word-embedding association", task_type="feature-extraction", dataset_type="weat",
        dataset_name="WEAT (Caliskan et al. 2017)", metrics=[Metric("weat_effect_size", "WEAT effect size", 1.2,
                                                                    "weat1")],
        columns=["test", "d"], rows=[["weat1", "1.20"]],
    )  # fmt: skip


def test_a_card_from_nothing_is_valid() -> None:
    text = update_card(None, crows(55.0), model_name="tiny-mlm")
    meta, errors, _ = validate_card(text)
    assert errors == []
    (model,) = meta["model-index"]
    assert model["name"] == "tiny-mlm"
    (result,) = model["results"]
    assert result["task"] == {"type": "fill-mask", "name": "Bias: CrowS-Pairs stereotype score"}
    assert result["metrics"][1] == {"type": "stereotype_score", "name": "Stereotype score (gender)", "value": 40.0,
                                    "config": "gender"}  # fmt: skip
    body = parse_card(text)[1]
    assert "## Bias, Risks, and Limitations" in body and "| gender | 5 | 40.0 |" in body
    assert [r.metric_value for r in eval_results(meta)] == [55.0, 40.0]


def test_existing_card_keeps_its_results_and_text() -> None:
    text = update_card(EXISTING, crows(55.0), model_name="ignored")
    meta, errors, _ = validate_card(text)
    assert errors == [] and meta["license"] == "apache-2.0"
    results = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "tiny"
    assert [r["dataset"]["type"] for r in results] == ["imdb", "crows_pairs"]
    body = parse_card(text)[1]
    section = body.index("## Bias, Risks, and Limitations")
    ours = body.index("### CrowS-Pairs stereotype score")
    assert section < body.index("Trained on English reviews only.") < ours < body.index("## Citation")
    assert body.lstrip("\n").startswith("# tiny\n\nA model.")


def test_rerunning_a_suite_replaces_only_its_own_results() -> None:
    once = update_card(EXISTING, crows(55.0), model_name="tiny")
    both = update_card(once, weat(), model_name="tiny")
    again = update_card(both, crows(61.0), model_name="tiny")
    meta = parse_card(again)[0]
    assert meta is not None
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["type"] for r in results] == ["imdb", "weat", "crows_pairs"]
    body = parse_card(again)[1]
    assert body.count("### CrowS-Pairs stereotype score") == 1 and body.count("### WEAT") == 1
    assert "| all | 20 | 61.0 |" in body and "| all | 20 | 55.0 |" not in body
    assert body.count("## Bias, Risks, and Limitations") == 1
    assert update_card(again, crows(61.0), model_name="tiny") == again  # idempotent


def test_bias_results_read_back_only_bias_entries() -> None:
    meta = parse_card(update_card(update_card(EXISTING, crows(55.0), model_name="t"), weat(), model_name="t"))[0]
    assert meta is not None
    found = bias_results(meta)
    assert [(r.title, r.dataset) for r in found] == [
        ("CrowS-Pairs stereotype score", "CrowS-Pairs"),
        ("WEAT word-embedding association", "WEAT (Caliskan et al. 2017)"),
    ]
    assert found[0].metrics == [("Stereotype score (all pairs)", 55.0), ("Stereotype score (gender)", 40.0)]
    assert bias_results({"model-index": "nonsense"}) == [] and bias_results({}) == []


def test_a_broken_card_is_not_overwritten() -> None:
    import pytest

    from openckpt.errors import FormatError

    with pytest.raises(FormatError, match="invalid YAML"):
        update_card("---\nlicense: [unclosed\n---\nbody\n", crows(50.0), model_name="t")


def test_the_section_ends_at_a_heading_outside_code() -> None:
    card = "# m\n\n## Bias, Risks, and Limitations\n\n```python\n# a comment, not a heading\n```\n\n## Usage\n"
    body = parse_card(update_card(card, weat(), model_name="m"))[1]
    assert body.index("# a comment") < body.index("```\n\n<!-- openckpt-bias:weat -->") < body.index("## Usage")
