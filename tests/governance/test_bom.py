"""The ML-BOM is valid CycloneDX 1.6 (the official schema, shipped by cyclonedx-python-lib, checked offline)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import openckpt
from openckpt.digest import sha256_file
from openckpt.governance.bom import bom_of_directory, build_bom

CARD = """---
license: apache-2.0
base_model: org/base
datasets: [wikitext]
pipeline_tag: text-generation
model-index:
- name: tiny
  results:
  - task: {type: text-generation}
    dataset: {type: wikitext, name: WikiText}
    metrics: [{type: perplexity, value: 21.5}]
---
# tiny
"""


def validate_cyclonedx(bom: dict[str, Any]) -> None:
    """Validate against bom-1.6 with its local references (spdx, jsf) resolved from the package's files (which name
    them ``*.SNAPSHOT.schema.json``; the published schema's names are registered too)."""
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    res = resources.files("cyclonedx.schema") / "_res"

    def load(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((res / name).read_text("utf-8"))
        return data

    schema = load("bom-1.6.SNAPSHOT.schema.json")
    base = schema["$id"].rsplit("/", 1)[0]  # relative $refs resolve against the schema's $id
    registry = referencing.Registry().with_resources(
        (f"{base}/{name}", referencing.Resource.from_contents(load(file), referencing.jsonschema.DRAFT7))
        for file in ("spdx.SNAPSHOT.schema.json", "jsf-0.82.SNAPSHOT.schema.json")
        for name in (file, file.replace(".SNAPSHOT", ""))
    )
    validator = jsonschema.Draft7Validator(schema, registry=registry, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(bom), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_bom_of_a_checkpoint_directory(tmp_path: Path) -> None:
    import torch

    directory = tmp_path / "tiny"
    openckpt.save(directory, {"model": torch.nn.Linear(3, 2)}, training={"datasets": [{"name": "c4"}]},
                  lineage={"license": "apache-2.0"})  # fmt: skip
    (directory / "README.md").write_text(CARD)
    bom = bom_of_directory(directory, tool_version="0.1")
    validate_cyclonedx(bom)
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    weights = sorted(p for p in directory.rglob("*.safetensors"))
    assert weights and {h["content"] for h in model["hashes"]} == {sha256_file(p) for p in weights}
    assert model["licenses"] == [
        {"license": {"id": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"}}
    ]
    assert model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0] == {
        "type": "perplexity", "value": "21.5", "slice": "WikiText (text-generation)"}  # fmt: skip
    kinds = {c["bom-ref"]: c["type"] for c in bom["components"]}
    assert kinds["dataset:wikitext"] == kinds["dataset:c4"] == "data"
    assert kinds["model:org/base"] == "machine-learning-model"
    assert any(k.startswith("library:torch@") for k in kinds)
    [root] = [d for d in bom["dependencies"] if d["ref"] == model["bom-ref"]]
    assert set(root["dependsOn"]) == set(kinds)


def test_bom_with_an_unusual_license_is_still_valid() -> None:
    bom = build_bom("m", weights={"a.bin": "0" * 64}, card={"license": ["llama3.1", "other"]})
    validate_cyclonedx(bom)
    assert [lic["license"].get("name") for lic in bom["metadata"]["component"]["licenses"]][1] == "Other"


def test_the_schema_check_catches_a_broken_bom() -> None:
    bom = build_bom("m", weights={"a.bin": "0" * 64}, card={})
    bom["metadata"]["component"]["type"] = "neural-network"
    with pytest.raises(AssertionError, match="type"):
        validate_cyclonedx(bom)
