"""``openckpt reproduce DIR`` of a training script that used CheckpointManager: the recorded entry point re-runs
with its checkpoints redirected to a fresh directory; whole run, ``--steps``, and what is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import zygote

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import torch
from openckpt import CheckpointManager, ResumableLoader, TrainingProgress

out, lr = sys.argv[1], float(sys.argv[2])
torch.manual_seed(0)
data = torch.randn(24, 4)
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=lr)
loader = ResumableLoader(data, batch_size=4, seed=5)
progress = TrainingProgress()
state = {"model": model, "optimizer": optimizer, "loader": loader, "progress": progress}
with CheckpointManager(out, save_every=2, config={"lr": lr}, seeds={"torch": 0}) as manager:
    manager.restore_latest(state)
    while progress.step < 6:
        for batch in loader:
            loss = model(batch).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            progress.step += 1
            manager.maybe_save(state, metrics={"loss": float(loss)})
            if progress.step >= 6:
                break
"""


def _run(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return zygote.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)  # fmt: skip


def test_a_recorded_script_reproduces_bitwise_and_by_steps(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    assert _run(script, tmp_path / "run", "0.1", cwd=tmp_path).returncode == 0
    manifest = json.loads((tmp_path / "run" / "step-00000006" / "openckpt.json").read_text())
    assert manifest["recipe"]["entry_point"] == str(script) and manifest["recipe"]["command"][1:] == [
        str(tmp_path / "run"), "0.1"]  # fmt: skip

    done = _run("-m", "openckpt.cli.app", "reproduce", tmp_path / "run", "--out", tmp_path / "again", "--json",
                cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["kind"], result["steps"], result["verdict"]) == ("script", 6, "bitwise")
    assert (tmp_path / "again" / "step-00000006").is_dir() and not (tmp_path / "run" / "step-00000008").exists()

    short = _run("-m", "openckpt.cli.app", "reproduce", tmp_path / "run", "--steps", "4", "--out", tmp_path / "four",
                 "--json", cwd=ROOT)  # fmt: skip
    assert short.returncode == 0, short.stderr[-3000:]
    assert json.loads(short.stdout)["verdict"] == "bitwise"
    assert sorted(p.name for p in (tmp_path / "four").glob("step-*")) == ["step-00000002", "step-00000004"]


def test_reproduce_refuses_what_has_no_recipe_and_push_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _run("-m", "openckpt.cli.app", "reproduce", tmp_path / "empty", cwd=ROOT)
    assert done.returncode != 0 and "no recipe here" in done.stderr
    pushed = _run("-m", "openckpt.cli.app", "reproduce", tmp_path / "empty", "--push", cwd=ROOT)
    assert pushed.returncode == 2 and "--push is for hub repos" in pushed.stderr
