"""Accuracy on files the field's own libraries write (tests/scan/realfiles.py), on a plain clone: every malicious
twin is malicious (exit 1 from ``openckpt scan``), every benign file gets its exact verdict and nothing worse."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from openckpt.cli.app import app
from openckpt.scan.api import scan
from openckpt.scan.verdict import ScanReport, Verdict

from .realfiles import BUILDERS

NAMES = [spec.name for spec in BUILDERS]
MALICIOUS = [spec.name for spec in BUILDERS if spec.expected == "malicious"]
BENIGN = [spec.name for spec in BUILDERS if spec.expected != "malicious"]


def _worst(report: ScanReport) -> Verdict:
    return max((r.verdict for r in report.results), key=lambda v: v.rank)


def _why(report: ScanReport) -> list[str]:
    return [f"{r.path}: {r.verdict.value}: {f.reason}" for r in report.results for f in r.findings if f.severity][:8]


def test_every_field_and_twin_is_built(real_corpus: dict[str, Any]) -> None:
    assert set(real_corpus) == set(NAMES)
    fields = {f.field for f in real_corpus.values()}
    assert fields == {"nlp", "vision", "speech", "rl", "formats", "containers"}
    assert len(MALICIOUS) >= 17 and all(real_corpus[n].path.exists() for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_verdict(real_corpus: dict[str, Any], name: str) -> None:
    entry = real_corpus[name]
    report = scan(entry.path)
    assert _worst(report).value == entry.expected, _why(report)
    if not entry.malicious:
        bad = [r for r in report.results if r.verdict.rank > Verdict.NEEDS_CODE.rank]
        assert not bad, _why(report)


@pytest.mark.parametrize("name", MALICIOUS)
def test_malicious_exit_1(real_corpus: dict[str, Any], name: str) -> None:
    result = CliRunner().invoke(app, ["scan", str(real_corpus[name].path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert "malicious" in result.output, result.output


def test_benign_exit_0(real_corpus: dict[str, Any]) -> None:
    paths = [str(real_corpus[n].path) for n in BENIGN]
    result = CliRunner().invoke(app, ["scan", *paths], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("name", "packages", "some_import"),
    [
        ("ultralytics-yolo", ["ultralytics"], "ultralytics.nn.tasks.DetectionModel"),
        (
            "stable-diffusion-1x-ckpt",
            ["pytorch_lightning"],
            "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        ),
        ("sb3-ppo", ["gymnasium", "stable_baselines3"], "stable_baselines3.common.policies.ActorCriticPolicy"),
        ("sb3-dqn", ["gymnasium", "stable_baselines3"], "gymnasium.spaces.box.Box"),
        (
            "transformers-trainer-checkpoint",
            ["accelerate", "transformers"],
            "transformers.training_args.TrainingArguments",
        ),
    ],
)
def test_needs_code_names_packages_and_classes(
    real_corpus: dict[str, Any], name: str, packages: list[str], some_import: str
) -> None:
    report = scan(real_corpus[name].path)
    assert report.packages == packages
    assert some_import in {i for r in report.results for i in r.imports}


def test_torchscript_says_what_runs(real_corpus: dict[str, Any]) -> None:
    (result,) = scan(real_corpus["torchscript-module"].path).results
    assert result.verdict is Verdict.NEEDS_CODE and result.format == "torchscript"
    assert result.runs == ["torch.jit.load"] and result.imports == [] and result.packages == ["torch"]


def test_layouts_are_recognised(real_corpus: dict[str, Any]) -> None:
    formats = {r.path.rsplit("/", 1)[-1]: r.format for r in scan(real_corpus["dcp-directory"].path).results}
    assert formats == {".metadata": "pickle", "__0_0.distcp": "distcp"}
    assert scan(real_corpus["sb3-ppo"].path).results[0].format == "sb3"
    assert scan(real_corpus["7z-container"].path).results[0].format == "7z"


def test_malicious_serialized_field_is_located(real_corpus: dict[str, Any]) -> None:
    (result,) = scan(real_corpus["sb3-serialized-malicious"].path).results
    evil = [f for f in result.findings if f.callable == "os.system"]
    assert evil and evil[0].member == "data!lr_schedule:serialized:"
