"""A loop that counts only steps still records how many samples it trained on: the ResumableLoader counts them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

import openckpt
from openckpt.cli.app import app


def _train(run: Path, steps: int, progress: openckpt.TrainingProgress | None = None) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    data = torch.utils.data.TensorDataset(torch.randn(100, 4), torch.randint(0, 2, (100,)))
    loader = openckpt.ResumableLoader(data, batch_size=32, seed=1)  # 4 batches an epoch: 32, 32, 32, 4
    progress = progress or openckpt.TrainingProgress()
    state = {"model": model, "loader": loader, "progress": progress}
    with openckpt.CheckpointManager(run, save_every=steps) as manager:
        manager.restore_latest(state)
        while progress.step < steps:
            for _ in loader:
                progress.step += 1
                manager.maybe_save(state)
                if progress.step == steps:
                    break
            progress.epoch = loader.epoch


def test_samples_seen_comes_from_the_loader_when_the_loop_counts_steps_only(tmp_path: Path) -> None:
    _train(tmp_path / "run", 6)  # one epoch of 100 samples, then two batches of 32
    step = tmp_path / "run" / "step-00000006"
    assert openckpt.read_manifest(step).training.samples_seen == 164
    shown = CliRunner().invoke(app, ["inspect", str(step), "--json"])
    assert shown.exit_code == 0, shown.output
    training = json.loads(shown.output)["training"]
    assert training["samples_seen"] == 164 and "tokens_seen" not in training  # never counted: not shown as 0
    openckpt.export(step, tmp_path / "publish")
    assert "| Samples seen | 164 |" in (tmp_path / "publish" / "README.md").read_text()


def test_the_count_resumes_and_a_count_the_loop_keeps_wins(tmp_path: Path) -> None:
    _train(tmp_path / "run", 3)
    _train(tmp_path / "run", 6)  # resumed from step 3: the loader's count continues
    assert openckpt.read_manifest(tmp_path / "run" / "step-00000006").training.samples_seen == 164
    kept = openckpt.TrainingProgress(samples_seen=7)
    _train(tmp_path / "own", 1, kept)
    assert openckpt.read_manifest(tmp_path / "own" / "step-00000001").training.samples_seen == 7


def test_a_loader_resumed_from_an_older_checkpoint_does_not_guess() -> None:
    data = torch.utils.data.TensorDataset(torch.randn(10, 4))
    loader = openckpt.ResumableLoader(data, batch_size=4, seed=1)
    state = loader.state_dict()
    del state["samples_seen"]  # as written before the loader counted samples
    loader.load_state_dict(state)
    next(iter(loader))
    assert loader.samples_seen is None and loader.state_dict()["samples_seen"] is None
