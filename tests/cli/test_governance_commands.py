"""``openckpt card generate|lint``, ``openckpt openness`` and ``openckpt bom`` on a directory and on a hub repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import openckpt
from openckpt.governance.cards import validate_card
from tests.cli.helpers import Invoke
from tests.governance.test_bom import CARD, validate_cyclonedx
from tests.hubtools import HubProcess


@pytest.fixture
def described(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-model"
    openckpt.save(path, {"model": torch.nn.Linear(4, 2)}, training={"step": 7, "metrics": {"loss": 0.25},
                  "datasets": [{"name": "wikitext"}]}, lineage={"base_model": "org/base", "relation": "finetune",
                  "license": "apache-2.0"})  # fmt: skip
    return path


def test_card_generate_and_lint(invoke: Invoke, described: Path, tmp_path: Path) -> None:
    printed = invoke("card", "generate", described)
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.startswith("---\nlicense: apache-2.0\n") and "# tiny-model" in printed.stdout
    out = tmp_path / "README.md"
    assert invoke("card", "generate", described, "-o", out, "--name", "Tiny").exit_code == 0
    assert validate_card(out.read_text())[1:] == ([], [])
    linted = invoke("card", "lint", out)
    assert linted.exit_code == 0 and "ok" in linted.stdout
    bad = tmp_path / "bad.md"
    bad.write_text("---\nlicense: nope\nmodel-index:\n- name: x\n  results:\n  - task: {}\n---\n")
    linted = invoke("card", "lint", bad)
    assert linted.exit_code == 1
    assert "'nope' is not a license id" in linted.stdout and "task.type is required" in linted.stdout
    assert invoke("card", "generate", tmp_path / "missing").exit_code == 2


def test_openness_and_bom_of_a_directory(invoke: Invoke, described: Path, tmp_path: Path) -> None:
    (described / "README.md").write_text(CARD)
    shown = invoke("openness", described)
    assert shown.exit_code == 0 and "Final model parameters" in shown.stdout and "not met" in shown.stdout
    report = json.loads(invoke("openness", described, "--json").stdout)
    assert report["mof_class"] is None and not report["osaid"]
    assert {c["name"]: c["status"] for c in report["components"]}["Model card"] == "verified"
    target = tmp_path / "bom.json"
    assert invoke("bom", described, "-o", target).exit_code == 0
    bom = json.loads(target.read_text())
    validate_cyclonedx(bom)
    assert bom["metadata"]["component"]["version"] == openckpt.format.manifest.read_manifest(described).id


def test_openness_and_bom_of_a_hub_repo(invoke: Invoke, hub: HubProcess, described: Path) -> None:
    from huggingface_hub import HfApi

    token = hub.create_user(f"gov{abs(hash(hub.url)) % 10**6}")
    api = HfApi(endpoint=hub.url, token=token)
    repo_id = f"{api.whoami()['name']}/tiny"
    (described / "README.md").write_text(CARD)
    api.create_repo(repo_id)
    api.upload_folder(folder_path=described, repo_id=repo_id)
    api.update_repo_settings(repo_id, gated="manual")  # reports describe metadata: gated repos answer them
    report = json.loads(invoke("openness", repo_id, "--json", "--endpoint", hub.url, "--token", token).stdout)
    assert {c["name"]: c["status"] for c in report["components"]}["Evaluation results"] == "declared"
    printed = invoke("bom", repo_id, "--endpoint", hub.url, "--token", token)
    assert printed.exit_code == 0, printed.output
    bom = json.loads(printed.stdout)
    validate_cyclonedx(bom)
    entries = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True) if hasattr(e, "lfs")}
    weights = {p: e.lfs.sha256 for p, e in entries.items() if p.endswith(".safetensors") and e.lfs}
    assert weights and {h["content"] for h in bom["metadata"]["component"]["hashes"]} == set(weights.values())
    assert any(c["type"] == "library" and c["name"] == "torch" for c in bom["components"])
    missing = invoke("bom", "nobody/nothing", "--endpoint", hub.url, "--token", token)
    assert missing.exit_code == 3  # not found
