"""A small training run whose checkpoints may be mirrored into a bucket; run by test_bucket_resume.py.

An MLP with dropout and AdamW trains on a shuffled dataset with per-sample noise, saving every step. It resumes with
``restore_latest`` (from the mirror when ``--dir`` is empty) and prints ``resumed <step>``. With ``--slow`` each step
after the first save pauses a moment and, once ``--steps`` are done, the process waits to be killed rather than
exit, so a kill always lands mid-run; otherwise it writes its final model and optimizer to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

import openckpt


class NoisyDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    def __init__(self, n: int = 30) -> None:
        g = torch.Generator().manual_seed(11)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x.sum(dim=1, keepdim=True) > 0).float()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.1 * torch.randn(6), self.y[i]  # noise from the global RNG, restored with it


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--mirror", default=None)
    p.add_argument("--slow", action="store_true")
    args = p.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loader = openckpt.ResumableLoader(NoisyDataset(), batch_size=4, seed=99)
    progress = openckpt.TrainingProgress()
    state = {"model": model, "optimizer": optimizer, "loader": loader, "progress": progress, "rng": openckpt.RNGState()}
    manager = openckpt.CheckpointManager(
        args.dir, save_every=1, async_save=True, keep=[openckpt.keep_last(2)], mirror=args.mirror
    )
    manager.restore_latest(state)
    print(f"resumed {progress.step}", flush=True)
    while progress.step < args.steps:
        for x, y in loader:
            loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            progress.step += 1
            manager.maybe_save(state)
            if args.slow:
                time.sleep(0.3)
            if progress.step == args.steps:
                break
        progress.epoch = loader.epoch
    if args.slow:
        print("done", flush=True)
        time.sleep(3600)  # killed before this ends
    manager.close()
    openckpt.save(args.out, {"model": model, "optimizer": optimizer}, overwrite=True)


if __name__ == "__main__":
    main()
