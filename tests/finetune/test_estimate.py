"""``estimate``: parameter counts from safetensors headers, and memory compared with the measured peak of real runs.

The measured figure is the growth of the peak resident set (VmHWM) of a process of its own over a few training
steps (or two no-grad forward passes), from just before the model is loaded (see ``peak_memory.py``). Models are
big enough (5M parameters, 8 x 128 tokens) that weights, optimizer state and activations, not the interpreter,
make up the peak; every estimate must be within ``TOLERANCE`` (35 %) of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openckpt.cli.app import app
from openckpt.finetune.estimate import GIB, TOLERANCE, estimate, gpu_memory
from openckpt.finetune.lora import LoraOptions, wrap
from openckpt.finetune.model import load_model
from tests import zygote
from tests.finetune.conftest import ROOT
from tests.finetune.tiny import build_bert, build_gpt2


@pytest.fixture(scope="module")
def mid_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A GPT-2-style LM and a BERT-style classifier of about 5M parameters each (no tokenizer needed)."""
    root = tmp_path_factory.mktemp("mid")
    shape = {"hidden": 256, "layers": 4, "heads": 4, "vocab": 8192, "positions": 256, "tokenizer": False}
    return {"gpt2": build_gpt2(root / "gpt2", **shape), "bert": build_bert(root / "bert", intermediate=1024, **shape)}


@pytest.mark.parametrize(("model", "task"), [("gpt2", "causal-lm"), ("bert", "text-classification")])
def test_parameter_counts_match_the_built_models(models: dict[str, Path], model: str, task: str) -> None:
    built, config = load_model(models[model], task=task)
    full = estimate(models[model], method="full")
    assert full.parameters == full.trainable_parameters == sum(p.numel() for p in built.parameters())
    lora = estimate(models[model], method="lora", lora=LoraOptions(rank=4))
    wrapped = wrap(built, LoraOptions(rank=4), task=task, model_type=config["model_type"])
    assert lora.trainable_parameters == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert lora.task == task and lora.optimizer == 8 * lora.trainable_parameters


def measured_growth(model: Path, *, method: str, task: str) -> int:
    spec = {"model": str(model), "method": method, "task": task, "batch_size": 8, "seq_len": 128}
    done = zygote.run([sys.executable, "-m", "tests.finetune.peak_memory", json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    growth: int = json.loads(done.stdout.strip().splitlines()[-1])["growth"]
    return growth


@pytest.mark.parametrize(
    ("model", "task", "method"),
    [("gpt2", "causal-lm", "full"), ("gpt2", "causal-lm", "lora"), ("gpt2", "causal-lm", "inference"),
     ("bert", "text-classification", "full"), ("bert", "text-classification", "lora")],
)  # fmt: skip
def test_estimate_is_within_tolerance_of_the_measured_peak(
    mid_models: dict[str, Path], model: str, task: str, method: str
) -> None:
    predicted = estimate(mid_models[model], method=method, batch_size=8, seq_len=128, task=task)
    growth = measured_growth(mid_models[model], method=method, task=task)
    assert abs(predicted.total / growth - 1) <= TOLERANCE, (predicted.to_dict(), growth)


def test_gpu_sizes() -> None:
    assert gpu_memory("24GB") == gpu_memory("24 gib") == 24 * GIB
    assert gpu_memory("a100-80gb") == gpu_memory("H100") == 80 * GIB
    with pytest.raises(ValueError, match="unknown GPU"):
        gpu_memory("quantum-9000")


def test_cli_says_what_fits(models: dict[str, Path]) -> None:
    runner = CliRunner()
    args = ["estimate", str(models["gpt2"]), "--batch-size", "2", "--seq-len", "16"]
    small = runner.invoke(app, [*args, "--gpu", "0.001GB", "--json"])
    assert small.exit_code == 0, small.output
    rows = json.loads(small.stdout)
    assert [r["method"] for r in rows] == ["inference", "lora", "full"]
    assert all(r["fits_gpu"] is False and r["fits_here"] is True for r in rows)
    big = json.loads(runner.invoke(app, [*args, "--method", "full", "--gpu", "A100-80GB", "--json"]).stdout)
    assert [(r["method"], r["fits_gpu"]) for r in big] == [("full", True)]
    table = runner.invoke(app, [*args, "--gpu", "0.001GB"], env={"COLUMNS": "200"})
    assert "does not fit" in table.stdout and "this machine" in table.stdout and "optimizer" in table.stdout
    unknown = runner.invoke(app, [*args, "--gpu", "quantum-9000"])
    assert unknown.exit_code == 2


def test_half_precision_halves_weights_and_activations_not_adam_moments(models: dict[str, Path]) -> None:
    f32 = estimate(models["gpt2"], method="full", dtype="float32", batch_size=2, seq_len=16)
    bf16 = estimate(models["gpt2"], method="full", dtype="bfloat16", batch_size=2, seq_len=16)
    assert (bf16.weights, bf16.gradients, bf16.activations) == (f32.weights // 2, f32.gradients // 2,
                                                               f32.activations // 2)  # fmt: skip
    assert bf16.optimizer == f32.optimizer == 8 * f32.parameters  # AdamW moments stay float32
