"""``openckpt license check DIR``: verdicts, JSON, policies, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from openckpt.cli.app import app

runner = CliRunner()


def model(tmp_path: Path, meta: str, body: str = "# m\n", **files: str) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    (d / "README.md").write_text(f"---\n{meta}---\n{body}")
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_violation_exits_1_and_explains(tmp_path: Path) -> None:
    d = model(tmp_path, "license: apache-2.0\nbase_model: org/base\nbase_model_license: cc-by-nc-4.0\n")
    result = runner.invoke(app, ["license", "check", str(d)])
    assert result.exit_code == 1, result.output
    assert "violation" in result.output and "cc-by-nc-4.0" in result.output


def test_json_and_ok(tmp_path: Path) -> None:
    d = model(tmp_path, "license: mit\nbase_model: org/base\nbase_model_license: apache-2.0\n", LICENSE="MIT")
    result = runner.invoke(app, ["license", "check", str(d), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "ok" and report["ancestors"][0] == {
        "id": "org/base", "license": "apache-2.0", "relation": "finetune", "local": False, "depth": 1, "via": None,
        "has_notice": None}  # fmt: skip


def test_unknown_external_base_needs_review(tmp_path: Path) -> None:
    d = model(tmp_path, "license: mit\nbase_model: org/base\n", LICENSE="MIT")
    result = runner.invoke(app, ["license", "check", str(d), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["verdict"] == "needs human review"


def test_llama_naming_pending(tmp_path: Path) -> None:
    d = model(tmp_path, "license: llama3.1\nbase_model: meta/Llama-3.1-8B\nbase_model_license: llama3.1\n",
              "Built with Llama\n", LICENSE="x",
              NOTICE="Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta Platforms, Inc. "
              "All Rights Reserved.")  # fmt: skip
    result = runner.invoke(app, ["license", "check", str(d), "--json"])
    report = json.loads(result.output)
    assert report["verdict"] == "obligations pending"
    assert [o["clause"] for o in report["obligations"] if o["status"] == "pending"] == [
        "Llama 3.1 Community License Agreement §1.b.i"]  # fmt: skip


def test_policy_applies_locally(tmp_path: Path) -> None:
    d = model(tmp_path, "license: mit\n", LICENSE="MIT")
    policy = tmp_path / "policy.yaml"
    policy.write_text("allowed_licenses: [apache-2.0]\n")
    result = runner.invoke(app, ["license", "check", str(d), "--policy", str(policy), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["findings"][0]["code"] == "policy-license-not-allowed"
    policy.write_text("no_such_rule: 1\n")
    bad = runner.invoke(app, ["license", "check", str(d), "--policy", str(policy)])
    assert bad.exit_code == 2 and "unknown policy rules" in bad.output
