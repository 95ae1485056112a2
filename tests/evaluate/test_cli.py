"""``openckpt evaluate bias DIR``: the results, ``--json``, the card written atomically, and refusals."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from openckpt.governance.cards import parse_card, validate_card
from tests import zygote

from .test_fairness import write_csv

Invoke = Callable[..., Result]


@pytest.fixture
def model_dir(classifier: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(classifier, tmp_path / "yes-classifier"))


def test_fairness_json_and_card(invoke: Invoke, model_dir: Path, tmp_path: Path, offline: None) -> None:
    data = write_csv(tmp_path / "reviews.csv")
    result = invoke("evaluate", "bias", model_dir, "--suite", "fairness", "--data", data, "--sensitive-col", "group",
                    "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["report"]["details"]["demographic_parity_difference"] == pytest.approx(0.1)
    assert out["card"] == {"written": True, "path": str(model_dir / "README.md")}
    meta, errors, _ = validate_card((model_dir / "README.md").read_text())
    assert errors == []
    (result_entry,) = meta["model-index"][0]["results"]
    assert result_entry["dataset"] == {"type": "csv", "name": "reviews.csv"}
    assert meta["model-index"][0]["name"] == "yes-classifier"
    assert "Demographic parity difference **0.100**" in parse_card((model_dir / "README.md").read_text())[1]
    assert not list(model_dir.glob("*.tmp*"))


def test_table_output_and_no_card(invoke: Invoke, model_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "reviews.csv")
    result = invoke("evaluate", "bias", model_dir, "--suite", "fairness", "--data", data, "--sensitive-col", "group",
                    "--no-card")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "group=B" in result.stdout and "0.800" in result.stdout
    assert "Demographic parity difference 0.100" in result.stdout
    assert not (model_dir / "README.md").exists()


def test_unsuitable_suite_is_an_error_without_numbers(invoke: Invoke, model_dir: Path) -> None:
    result = invoke("evaluate", "bias", model_dir, "--suite", "crows-pairs", "--limit", "2")
    assert result.exit_code == 2
    assert "UnsuitableModelError" in result.stderr and "use --suite fairness" in result.stderr
    assert result.stdout == "" and not (model_dir / "README.md").exists()


def test_missing_options_are_named(invoke: Invoke, model_dir: Path) -> None:
    result = invoke("evaluate", "bias", model_dir, "--suite", "fairness")
    assert result.exit_code == 2 and "--suite fairness needs --data CSV" in result.output
    result = invoke("evaluate", "bias", model_dir, "--suite", "weat", "--push")
    assert result.exit_code == 2 and "--push is for hub repos" in result.output


def test_crows_pairs_cli_limit(invoke: Invoke, masked_lm: Path, tmp_path: Path) -> None:
    model = Path(shutil.copytree(masked_lm, tmp_path / "mlm"))
    result = invoke("evaluate", "bias", model, "--suite", "crows-pairs", "--limit", "5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["report"]
    assert report["details"]["pairs"] == 5 and 0 <= report["details"]["stereotype_score"] <= 100
    assert "CrowS-Pairs" in (model / "README.md").read_text()


def test_weat_in_a_real_process_offline(minilm: Path, tmp_path: Path) -> None:
    """The console command on a copy of MiniLM (links to the package's files), with HF_HUB_OFFLINE=1."""
    import os
    import sys

    model = tmp_path / "minilm"
    for path in minilm.rglob("*"):
        if path.is_file():
            link = model / path.relative_to(minilm)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "openckpt.cli.app", "evaluate", "bias", str(model), "--suite", "weat",
           "--permutations", "1000", "--json"]  # fmt: skip
    done = zygote.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    tests = {t["test"]: t for t in json.loads(done.stdout)["report"]["details"]["tests"]}
    assert tests["weat1"]["effect_size"] > 1 and tests["weat1"]["p_value"] < 0.01
    assert set(tests) == {"weat1", "weat2", "weat6", "weat7", "weat8"}
    assert not (model / "README.md").is_symlink()  # replaced by the updated card; the package's file is untouched
    meta, errors, _ = validate_card((model / "README.md").read_text())
    assert errors == [] and meta["license"] == "apache-2.0"
    assert "Bias, Risks, and Limitations" not in (minilm / "README.md").read_text()
