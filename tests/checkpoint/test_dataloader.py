from __future__ import annotations

import pytest
import torch

import openckpt
from openckpt.errors import StateMismatchError


class Squares(torch.utils.data.Dataset[tuple[int, float]]):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> tuple[int, float]:
        return i, float(torch.rand(()))


def epochs(loader: openckpt.ResumableLoader, n: int) -> list[list[int]]:
    return [[int(i) for batch in loader for i in batch[0]] for _ in range(n)]


def test_order_depends_on_seed_and_epoch_only() -> None:
    a, b = (
        openckpt.ResumableLoader(Squares(), batch_size=3, seed=1),
        openckpt.ResumableLoader(Squares(), batch_size=3, seed=1),
    )
    torch.manual_seed(123)  # global RNG state must not matter
    first = epochs(a, 2)
    assert first == epochs(b, 2)
    assert first[0] != first[1] and sorted(first[0]) == list(range(10))


def test_resume_mid_epoch_yields_the_rest_with_same_samples() -> None:
    full = openckpt.ResumableLoader(Squares(), batch_size=3, seed=5)
    reference = [(b[0].tolist(), b[1].tolist()) for b in full]
    loader = openckpt.ResumableLoader(Squares(), batch_size=3, seed=5)
    it = iter(loader)
    head = [next(it), next(it)]
    state = loader.state_dict()
    assert state["position"] == 2 and state["epoch"] == 0
    resumed = openckpt.ResumableLoader(Squares(), batch_size=3, seed=5)
    resumed.load_state_dict(state)
    tail = list(resumed)
    got = [(b[0].tolist(), b[1].tolist()) for b in head + tail]
    assert got == reference and resumed.epoch == 1 and resumed.position == 0


def test_sharding_across_ranks_covers_the_epoch() -> None:
    ranks = [openckpt.ResumableLoader(Squares(), batch_size=2, seed=3, rank=r, world_size=3) for r in range(3)]
    seen = [int(i) for r in ranks for batch in r for i in batch[0]]
    assert set(seen) == set(range(10)) and len(seen) == 12  # padded like DistributedSampler


def test_loading_a_different_seed_or_dataset_is_refused() -> None:
    loader = openckpt.ResumableLoader(Squares(), seed=1)
    with pytest.raises(StateMismatchError, match="sample order would differ"):
        loader.load_state_dict({"seed": 2, "epoch": 0, "position": 0, "dataset_size": 10})


def test_a_loop_that_stops_after_len_batches_moves_to_the_next_epoch() -> None:
    """Lightning and friends stop after len(loader) batches without exhausting the iterator."""
    loader = openckpt.ResumableLoader(Squares(), batch_size=5, seed=2)
    seen = []
    for _ in range(3):
        it = iter(loader)
        seen.append([int(i) for _ in range(len(loader)) for i in next(it)[0]])
    assert all(sorted(epoch) == list(range(10)) for epoch in seen) and len({tuple(e) for e in seen}) == 3
