"""A two-rank (gloo, CPU) DDP training run used by test_distributed.py; run as a script, it starts its ranks.

Each rank trains a dropout MLP (DDP) with AdamW and a warmup+cosine LR schedule on its share of a shuffled dataset
with random per-sample augmentation; dropout draws from a per-rank seeded global RNG, so every rank's RNG state is
its own. With ``--stop-after k`` the ranks save through CheckpointManager at step k and exit at once (``os._exit``);
run again with the same directory they resume and continue to ``--steps``. Each rank writes its losses (float.hex),
sample indices, and its model and optimizer tensors (plain safetensors, independent of openckpt) to ``--out``;
at the end the ranks also save the model and optimizer with ``openckpt.save`` to ``<out>/final``.
With ``--fsdp`` it runs a sharded (FSDP2) save/load check instead. Under torchrun (``RANK`` set) it runs as that
one rank instead of starting them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

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


def dump_tensors(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Model weights and optimizer state as plain safetensors, for torch.equal comparisons in the test."""
    tensors = {f"model/{k}": v.detach().clone() for k, v in model.state_dict().items()}
    for i, per_param in optimizer.state_dict()["state"].items():
        for name, value in per_param.items():
            tensors[f"optimizer/{i}/{name}"] = value.detach().clone()
    save_file(tensors, str(path))


def train(rank: int, world: int, args: argparse.Namespace) -> None:
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1)))
    torch.manual_seed(1000 + rank)  # dropout masks differ between ranks: the RNG is rank-local state
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[3])
    loader = openckpt.ResumableLoader(NoisyDataset(), batch_size=3, seed=1234, rank=rank, world_size=world)
    progress = openckpt.TrainingProgress()
    state = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "loader": loader,
        "progress": progress,
        "rng": openckpt.RNGState(),
    }
    manager = openckpt.CheckpointManager(args.dir, keep=[openckpt.keep_last(2)])
    manager.restore_latest(state)

    out = args.out / f"rank-{rank}"
    losses: list[str] = []
    indices: list[list[int]] = []

    def stop_if_asked(loss: float | None) -> None:
        if progress.step in args.stop_after:
            manager.save(state, metrics={} if loss is None else {"loss": loss})
            _report(out, model.module, optimizer, losses, indices, progress.step)
            _exit_together()  # no clean shutdown, like a kill right after the commit

    stop_if_asked(None)  # --stop-after 0: a checkpoint before the first step (empty optimizer state)
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
            stop_if_asked(loss.item())
            if progress.step == args.steps:
                break
        progress.epoch = loader.epoch
    manager.close()
    openckpt.save(args.out / "final", {"model": model, "optimizer": optimizer}, overwrite=True)  # collective
    _report(out, model.module, optimizer, losses, indices, progress.step)


def _report(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    losses: list[str],
    indices: list[list[int]],
    step: int,
) -> None:
    dump_tensors(out.with_suffix(".safetensors"), model, optimizer)
    out.with_suffix(".json").write_text(json.dumps({"losses": losses, "indices": indices, "step": step}))


def fsdp(rank: int, world: int, args: argparse.Namespace) -> None:
    """FSDP2 (sharded DTensors): save, load into fresh shards at the same world size, report whether each rank's
    shards came back equal; rank 0 also writes the full tensors, which a single process must load resharded."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    def make() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    def local(t: torch.Tensor) -> torch.Tensor:
        return t.to_local() if hasattr(t, "to_local") else t

    model, optimizer = make()
    torch.manual_seed(rank)
    for _ in range(args.steps):
        loss = model(torch.randn(5, 8)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    openckpt.save(args.dir, {"model": model, "optimizer": optimizer})
    model2, optimizer2 = make()
    openckpt.load(args.dir, {"model": model2, "optimizer": optimizer2})
    a, b = model.state_dict(), model2.state_dict()
    sa, sb = optimizer.state_dict()["state"], optimizer2.state_dict()["state"]
    report = {
        "sharded": all(type(t).__name__ == "DTensor" for t in a.values()),
        "model": all(torch.equal(local(a[k]), local(b[k])) for k in a),
        "optimizer": sa.keys() == sb.keys()
        and all(torch.equal(local(sa[i][k]), local(sb[i][k])) for i in sa for k in sa[i]),
    }
    (args.out / f"rank-{rank}.json").write_text(json.dumps(report))
    full = {k: v.full_tensor() for k, v in a.items()}  # collective: every rank gathers
    if rank == 0:
        save_file(full, str(args.out / "full.safetensors"))


def _rank_main(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    (fsdp if args.fsdp else train)(rank, world, args)
    _exit_together()


def _exit_together() -> None:
    """Leave once every rank is done, skipping teardown: with torch 2.13 on CPU, gloo's teardown now and then aborts
    ("terminate called without an active exception") or hangs after the run is over, which would make tests flaky."""
    dist.barrier()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="directory for rank-<r>.json / .safetensors")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--stop-after", type=int, action="append", default=[])
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--fsdp", action="store_true", help="the FSDP2 save/load check instead of the training run")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if "RANK" in os.environ:  # started by torchrun
        dist.init_process_group("gloo")
        (fsdp if args.fsdp else train)(dist.get_rank(), dist.get_world_size(), args)
        _exit_together()
    else:
        # fork: fresh rank processes without importing torch again (this parent has run nothing but argparse)
        torch.multiprocessing.start_processes(
            _rank_main, args=(args.world, _free_port(), args), nprocs=args.world, start_method="fork"
        )


if __name__ == "__main__":
    main()
