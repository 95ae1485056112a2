"""ResumableLoader: a DataLoader whose sample order — and per-sample randomness — resumes exactly.

* The permutation of epoch ``e`` is derived from ``(seed, e)``, never from a global RNG.
* ``position`` counts the batches the training loop has *received* (not those workers prefetched), so resuming
  skips exactly what was trained on, without replaying data.
* Each sample is produced with the global RNGs (torch, numpy, random) seeded from ``(seed, epoch, index)``, so
  random augmentation is the same whichever worker — or the main process — draws it.
* It keeps running digests of what training received: blake3 chained batch by batch over the sample indices and
  (``digest_samples=True``) over the bytes of the batch's tensors/bytes in order; they resume with the position
  and go into the checkpoint's recipe (:meth:`ResumableLoader.digests`).
* ``samples_seen`` counts the samples of every batch received (times ``world_size``: each rank takes an equal share),
  so a :class:`CheckpointManager` records ``training.samples_seen`` even when the loop counts only steps.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch.utils.data

from openckpt.errors import StateMismatchError

__all__ = ["ResumableLoader", "batch_bytes", "derive_seed"]

_EMPTY = "0" * 64


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every part (stable across processes and Python versions)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def batch_bytes(batch: Any) -> Iterator[Any]:
    """Buffers of each tensor (and bytes/str value) in a batch, in a stable order (dict keys sorted), not copied."""
    import torch

    if isinstance(batch, torch.Tensor):
        t = batch.detach().cpu().contiguous()
        yield t.view(torch.uint8).numpy() if t.numel() else b""
    elif isinstance(batch, (bytes, bytearray)):
        yield bytes(batch)
    elif isinstance(batch, str):
        yield batch.encode()
    elif isinstance(batch, dict):
        for key in sorted(batch, key=str):
            yield str(key).encode()
            yield from batch_bytes(batch[key])
    elif isinstance(batch, (list, tuple)):
        for item in batch:
            yield from batch_bytes(item)
    elif hasattr(batch, "numpy") or type(batch).__module__ == "numpy":
        import numpy as np

        yield np.ascontiguousarray(batch).view(np.uint8)


def _chain(previous: str, parts: Iterator[Any]) -> str:
    import blake3

    h = blake3.blake3(bytes.fromhex(previous))
    for part in parts:
        h.update(part)
    return str(h.hexdigest())


class _SeededSamples(torch.utils.data.Dataset[Any]):
    """Wraps a map-style dataset so ``dataset[i]`` runs with RNGs seeded from (seed, epoch, i)."""

    def __init__(self, dataset: Any, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        import numpy as np
        import torch
        from torch.utils.data import get_worker_info

        in_main = get_worker_info() is None
        if in_main:
            saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        s = derive_seed(self.seed, self.epoch, index)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        try:
            return self.dataset[index]
        finally:
            if in_main:
                torch.set_rng_state(saved[0])
                np.random.set_state(saved[1])
                random.setstate(saved[2])


class ResumableLoader:
    """Iterate a map-style dataset in batches; ``state_dict()`` records (seed, epoch, position).

    Extra keyword arguments go to :class:`torch.utils.data.DataLoader` (``pin_memory``, ``timeout`` ...).
    With ``world_size > 1`` each rank takes its share of every epoch's permutation (padded like
    ``DistributedSampler``).
    """

    def __init__(  # noqa: PLR0913 — public API: DataLoader's keywords plus seeding, digests and rank
        self,
        dataset: Any,
        *,
        batch_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        seeded_samples: bool = True,
        digest_samples: bool = True,
        rank: int = 0,
        world_size: int = 1,
        **dataloader_kwargs: Any,
    ) -> None:
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError("batch_size must be >= 1 and 0 <= rank < world_size")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.seeded_samples = seeded_samples
        self.rank, self.world_size = rank, world_size
        self.dataloader_kwargs = dataloader_kwargs
        self.digest_samples = digest_samples
        self.epoch = 0
        self.position = 0
        self.indices_blake3 = _EMPTY
        self.samples_blake3 = _EMPTY
        self.batches_seen = 0
        self.samples_seen: int | None = 0

    def _indices(self, epoch: int) -> list[int]:
        import torch

        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            order: list[int] = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        if self.world_size > 1:
            per_rank = -(-n // self.world_size)
            order += order[: per_rank * self.world_size - n]
            order = order[self.rank :: self.world_size]
        return order

    def _batches(self, epoch: int) -> list[list[int]]:
        order = self._indices(epoch)
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __len__(self) -> int:
        return len(self._batches(self.epoch))

    def __iter__(self) -> Iterator[Any]:
        import torch
        from torch.utils.data import DataLoader

        batches = self._batches(self.epoch)
        if self.position >= len(batches):  # the last epoch was consumed to its end without exhausting the iterator
            self.epoch, self.position = self.epoch + 1, 0
            batches = self._batches(self.epoch)
        epoch = self.epoch
        remaining = batches[self.position :]
        dataset = _SeededSamples(self.dataset, self.seed, epoch) if self.seeded_samples else self.dataset
        kwargs: dict[str, Any] = {"collate_fn": self.collate_fn} if self.collate_fn is not None else {}
        loader: DataLoader[Any] = DataLoader(
            dataset,
            batch_sampler=remaining,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch, 1)),
            **kwargs,
            **self.dataloader_kwargs,
        )
        import array

        for indices, batch in zip(remaining, loader, strict=False):
            self.position += 1
            self.batches_seen += 1
            if self.samples_seen is not None:
                self.samples_seen += len(indices) * self.world_size
            self.indices_blake3 = _chain(self.indices_blake3, iter([array.array("q", indices).tobytes()]))
            if self.digest_samples:
                self.samples_blake3 = _chain(self.samples_blake3, batch_bytes(batch))
            yield batch
        self.epoch, self.position = epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "dataset_size": len(self.dataset),
            "indices_blake3": self.indices_blake3,
            "samples_blake3": self.samples_blake3 if self.digest_samples else None,
            "batches_seen": self.batches_seen,
            "samples_seen": self.samples_seen,
        }

    def digests(self) -> dict[str, Any]:
        """Digests of the data received so far: indices and (if digested) samples, chained batch by batch."""
        return {
            "indices_blake3": self.indices_blake3,
            "batches": self.batches_seen,
            "samples_blake3": self.samples_blake3 if self.digest_samples else None,
        }

    def check_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict["dataset_size"] != len(self.dataset) or state_dict["seed"] != self.seed:
            raise StateMismatchError(
                f"data loader was saved with seed {state_dict['seed']} over {state_dict['dataset_size']} samples; "
                f"this one has seed {self.seed} over {len(self.dataset)}: the sample order would differ"
            )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.check_state_dict(state_dict)
        self.epoch, self.position = int(state_dict["epoch"]), int(state_dict["position"])
        self.indices_blake3 = str(state_dict.get("indices_blake3") or _EMPTY)  # absent in checkpoints before 1.2
        self.samples_blake3 = str(state_dict.get("samples_blake3") or _EMPTY)
        self.batches_seen = int(state_dict.get("batches_seen") or 0)
        seen = state_dict.get("samples_seen")  # absent in older checkpoints: then unknown, not restarted from 0
        self.samples_seen = None if seen is None else int(seen)
