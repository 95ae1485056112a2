"""SIGKILL a process at random moments while it saves: the newest checkpoint always loads, complete and committed."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import openckpt
from tests import zygote
from tests.checkpoint.crash_script import make_state

SCRIPT = Path(__file__).with_name("crash_script.py")
KILLS = 24


def test_sigkill_during_saves_never_loses_a_committed_checkpoint(tmp_path: Path) -> None:
    rng = random.Random(20261124)
    directory = tmp_path / "run"
    last_committed = 0
    for i in range(KILLS):
        cmd = [sys.executable, str(SCRIPT), "--dir", str(directory), *(["--async-save"] if i % 2 else [])]
        proc = zygote.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        committed = [int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")]
        last_committed = max([last_committed, *committed])

        state = make_state()
        manifest = openckpt.CheckpointManager(directory).restore_latest(state)
        assert manifest is not None, f"kill {i}: nothing to restore"
        step = manifest.training.step
        assert step is not None and step >= last_committed, f"kill {i}: lost committed step {last_committed}"
        model, buffers, progress = state["model"], state["buffers"], state["progress"]
        assert isinstance(model, torch.nn.Module) and isinstance(buffers, dict)
        assert isinstance(progress, openckpt.TrainingProgress) and progress.step == step
        assert all(bool((p == step).all()) for p in model.parameters()), f"kill {i}: torn weights"
        assert bool((buffers["ema"] == step).all()) and buffers["note"] == "step"
    assert last_committed > KILLS // 2, "the kills should land while saves are happening"
