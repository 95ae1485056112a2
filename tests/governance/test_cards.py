"""Card front matter validation per the Hub's conventions: license ids, lineage, ``model-index``, gated fields."""

from __future__ import annotations

from pathlib import Path

import pytest

import openckpt
from openckpt.errors import FormatError
from openckpt.format.card import render_card
from openckpt.format.manifest import read_manifest
from openckpt.governance.cards import eval_results, gate_fields, generate_card, validate_card

GOOD = """---
license: apache-2.0
base_model: openai-community/gpt2
base_model_relation: finetune
datasets: [wikitext]
tags: [text-generation, openckpt]
pipeline_tag: text-generation
library_name: transformers
extra_gated_prompt: Tell us who you are.
extra_gated_fields:
  Company: text
  Country: country
  Affiliation: {type: select, options: [Student, {label: Lab, value: lab}]}
  I agree: checkbox
model-index:
- name: tiny-gpt
  results:
  - task: {type: text-generation, name: Text Generation}
    dataset: {type: wikitext, name: WikiText-103, split: test}
    metrics:
    - {type: perplexity, value: 21.5, name: Perplexity}
    source: {name: own eval, url: "https://example.org/eval"}
---
# Tiny GPT
"""


def test_a_complete_card_is_valid() -> None:
    metadata, errors, warnings = validate_card(GOOD)
    assert errors == [] and warnings == []
    assert metadata["license"] == "apache-2.0"
    [result] = eval_results(metadata)
    assert (result.model_name, result.task_type, result.dataset_name, result.metric_type, result.metric_value) == (
        "tiny-gpt", "text-generation", "WikiText-103", "perplexity", 21.5)  # fmt: skip
    fields = gate_fields(metadata)
    assert [(f.name, f.type) for f in fields] == [
        ("Company", "text"), ("Country", "country"), ("Affiliation", "select"), ("I agree", "checkbox")]  # fmt: skip
    assert fields[2].options == ("Student", "Lab")


def test_model_index_structure_errors_name_their_place() -> None:
    card = """---
license: mit
model-index:
- results:
  - task: {name: x}
    dataset: {type: wikitext}
    metrics:
    - {type: accuracy}
    - {value: 3}
- name: other
  results: {}
---
"""
    metadata, errors, _ = validate_card(card)
    assert metadata == {}
    assert "model-index[0].name is required (the model's name)" in errors
    assert "model-index[0].results[0].task.type is required" in errors
    assert "model-index[0].results[0].dataset.name is required" in errors
    assert "model-index[0].results[0].metrics[0].value is required" in errors
    assert "model-index[0].results[0].metrics[1].type is required" in errors
    assert "model-index[1].results must be a list" in errors


def test_field_errors_and_warnings() -> None:
    _, errors, warnings = validate_card("---\nlicense: not-a-license\nbase_model_relation: distilled\ntags: 3\n---\n")
    assert any("'not-a-license' is not a license id" in e for e in errors)
    assert any("base_model_relation" in e for e in errors)
    assert '"tags" must be a string or a list of strings' in errors
    _, errors, warnings = validate_card("---\nlicense: other\nbase_model: [a/b, c/d]\n---\n")
    assert errors == []
    assert '"license: other" should come with "license_name"' in warnings
    assert any("merge" in w for w in warnings)
    _, errors, _ = validate_card("---\nlicense: mit\nextra_gated_fields:\n  Age: number\n  Pick: select\n---\n")
    assert any("'Age': type must be one of" in e for e in errors)
    assert any("'Pick': a select needs" in e for e in errors)
    assert validate_card("# no front matter\n") == ({}, [], ["no YAML metadata block at the top of README.md"])
    assert validate_card("---\n: [\n---\n")[1][0].startswith("invalid YAML")
    assert validate_card("---\n- a\n---\n")[1] == ["the metadata block must be a YAML mapping (key: value)"]
    assert validate_card("---\ntags: [a]\n---\n")[2] == ['no "license" field']


def test_a_generated_card_validates(tmp_path: Path) -> None:
    import torch

    model = torch.nn.Linear(2, 2)
    openckpt.save(tmp_path / "ck", {"model": model}, training={"step": 3, "metrics": {"loss": 0.5},
                  "datasets": [{"name": "wikitext"}]}, lineage={"base_model": "org/base", "relation": "finetune",
                  "license": "apache-2.0"})  # fmt: skip
    text = generate_card(tmp_path / "ck", name="my-model")
    assert text == render_card(read_manifest(tmp_path / "ck"), name="my-model")
    metadata, errors, warnings = validate_card(text)
    assert errors == [] and warnings == []
    assert metadata["base_model"] == "org/base" and eval_results(metadata)[0].metric_type == "loss"


def test_set_gate_form_writes_the_hubs_spelling_and_keeps_the_rest() -> None:
    from openckpt.governance.cards import GateField, set_gate_form

    card = "---\nlicense: mit\n---\n# Tiny\n\nText.\n"
    fields = [GateField("Company", "text"), GateField("Use", "select", ("Research", "Other"))]
    text = set_gate_form(card, fields, heading="Who are you?")
    metadata, errors, _ = validate_card(text)
    assert not errors and metadata["license"] == "mit" and metadata["extra_gated_heading"] == "Who are you?"
    assert gate_fields(metadata) == fields and text.endswith("# Tiny\n\nText.\n")
    cleared = set_gate_form(text, [])
    assert "extra_gated" not in cleared and "license: mit" in cleared
    assert set_gate_form(None, []) == ""
    with pytest.raises(FormatError):
        set_gate_form(card, [GateField("Use", "select")])  # a select needs options
