"""MOF class and OSI OSAID check over file lists, card metadata and dataset licenses."""

from __future__ import annotations

from openckpt.governance.openness import assess

OPEN_SCIENCE_FILES = [
    "README.md", "config.json", "model.safetensors", "technical_report.pdf", "eval_results.json", "data_card.md",
    "train.py", "inference.py", "eval.py", "eval_data/test.jsonl", "data/train.jsonl", "preprocess.py",
    "checkpoint-1000/model.safetensors", "paper.pdf",
]  # fmt: skip


def _by_name(result: object) -> dict[str, object]:
    return {c.name: c for c in result.components}  # type: ignore[attr-defined]


def test_weights_and_card_only_is_not_even_class_three() -> None:
    result = assess(["README.md", "config.json", "model.safetensors"], {"license": "apache-2.0"})
    assert result.mof_class is None
    components = _by_name(result)
    assert components["Final model parameters"].status == "verified"  # type: ignore[attr-defined]
    assert components["Final model parameters"].evidence == ["model.safetensors"]  # type: ignore[attr-defined]
    assert components["Technical report"].status == "missing"  # type: ignore[attr-defined]
    assert not result.osaid and any("training code missing" in r for r in result.osaid_reasons)


def test_declared_components_reach_class_three() -> None:
    card = {
        "license": "apache-2.0", "tags": ["arxiv:2401.00001"], "datasets": ["wikitext"],
        "model-index": [{"name": "m", "results": [{"task": {"type": "t"}, "dataset": {"type": "wikitext", "name": "W"},
                                                    "metrics": [{"type": "acc", "value": 1}]}]}],
    }  # fmt: skip
    result = assess(
        ["README.md", "config.json", "model.safetensors"], card, dataset_licenses={"wikitext": "cc-by-sa-3.0"}
    )
    components = _by_name(result)
    assert components["Technical report"].status == "declared"  # type: ignore[attr-defined]
    assert components["Evaluation results"].evidence == ["model-index: 1 metric(s)"]  # type: ignore[attr-defined]
    assert components["Data card"].license == "cc-by-sa-3.0"  # type: ignore[attr-defined]
    assert result.mof_class == 3 and result.mof_label == "Class III: Open Model"


def test_everything_open_is_class_one_and_meets_the_osaid() -> None:
    result = assess(OPEN_SCIENCE_FILES, {"license": "apache-2.0", "datasets": ["wikitext"]})
    assert result.mof_class == 1
    assert all(c.status == "verified" for c in result.components)
    assert result.osaid and result.osaid_reasons == []


def test_use_restrictions_fail_the_osaid_and_the_mof() -> None:
    for lic in ("llama3.1", "openrail", "gemma"):
        result = assess(OPEN_SCIENCE_FILES, {"license": lic, "datasets": ["wikitext"]})
        assert result.mof_class is None
        assert not result.osaid and any("restricts uses" in r for r in result.osaid_reasons)
    result = assess(OPEN_SCIENCE_FILES, {"license": "cc-by-nc-4.0"})
    assert any("commercial" in r for r in result.osaid_reasons)
    assert not assess(OPEN_SCIENCE_FILES, {}).osaid
