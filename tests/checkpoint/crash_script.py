"""Saves forever, one checkpoint a step, until it is killed; run by test_crash_safety.py.

Every tensor of the state at step s holds the value s, so a checkpoint mixing two saves is detectable.
Prints ``ready`` once it is saving and ``committed <step>`` after each save is durable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import openckpt


def make_state() -> dict[str, object]:
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 1024))
    return {
        "model": model,
        "buffers": {"ema": torch.zeros(1024, 1024), "note": "step"},
        "progress": openckpt.TrainingProgress(),
    }


def fill(state: dict[str, object], step: int) -> None:
    model, buffers, progress = state["model"], state["buffers"], state["progress"]
    assert isinstance(model, torch.nn.Module) and isinstance(buffers, dict)
    assert isinstance(progress, openckpt.TrainingProgress)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(step)
    buffers["ema"].fill_(step)
    progress.step = step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--async-save", action="store_true")
    args = p.parse_args()
    state = make_state()
    manager = openckpt.CheckpointManager(args.dir, async_save=args.async_save, keep=[openckpt.keep_last(2)])
    manifest = manager.restore_latest(state)
    step = manifest.training.step or 0 if manifest else 0
    print("ready", flush=True)
    while True:
        step += 1
        fill(state, step)
        manager.save(state)
        if args.async_save:
            manager.wait()
        print(f"committed {step}", flush=True)


if __name__ == "__main__":
    main()
