"""A small training run used by the exact-resume tests; run as a script in its own process.

It trains a dropout MLP with AdamW and a warmup+cosine LR schedule on a shuffled dataset with random per-sample
augmentation. With ``--stop-after k`` it saves a checkpoint at step k and exits at once (``os._exit``, like a kill);
run again with the same directory it resumes and continues to ``--steps``. It writes the losses (exact, as
float.hex), the sample indices it trained on and its final state (as an openckpt checkpoint) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from torch import nn

import openckpt


class NoisyDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x.sum(dim=1, keepdim=True) > 0).float()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.x[i] + 0.1 * torch.randn(8), self.y[i], i  # augmentation from the global RNG


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--stop-after", type=int, action="append", default=[])
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--async-save", action="store_true")
    args = p.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[3])
    loader = openckpt.ResumableLoader(NoisyDataset(), batch_size=6, seed=1234, num_workers=args.workers)
    progress = openckpt.TrainingProgress()
    state = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "loader": loader,
        "progress": progress,
        "rng": openckpt.RNGState(),
    }
    manager = openckpt.CheckpointManager(args.dir, async_save=args.async_save, keep=[openckpt.keep_last(2)])
    manager.restore_latest(state)

    losses: list[str] = []
    indices: list[list[int]] = []
    while progress.step < args.steps:
        for x, y, idx in loader:
            loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            progress.step += 1
            progress.samples_seen += len(idx)
            losses.append(loss.item().hex())
            indices.append(idx.tolist())
            if progress.step in args.stop_after:
                manager.save(state, metrics={"loss": loss.item()})
                manager.close()
                _report(args.out, losses, indices, progress.step)
                os._exit(0)
            if progress.step == args.steps:
                break
        progress.epoch = loader.epoch
    manager.close()
    openckpt.save(args.out.with_suffix(".final"), {"model": model, "optimizer": optimizer}, overwrite=True)
    _report(args.out, losses, indices, progress.step)


def _report(out: Path, losses: list[str], indices: list[list[int]], step: int) -> None:
    out.write_text(json.dumps({"losses": losses, "indices": indices, "step": step}))


if __name__ == "__main__":
    main()
