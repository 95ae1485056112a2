"""Exact resume across processes: k steps → save → new process → resume → N-k steps equals N steps from scratch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import openckpt
from tests import zygote

SCRIPT = Path(__file__).with_name("resume_script.py")
STEPS = 17  # 40 samples / batch 6 → 7 batches an epoch; 17 steps cross two epoch boundaries


def run(tmp: Path, name: str, *args: str) -> dict[str, object]:
    out = tmp / f"{name}.json"
    zygote.run(
        [
            sys.executable,
            str(SCRIPT),
            "--dir",
            str(tmp / "ckpt"),
            "--out",
            str(out),
            "--steps",
            str(STEPS),
            *args,
        ],
        check=True,
        timeout=300,
    )
    result: dict[str, object] = json.loads(out.read_text())
    return result


def final_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    from torch import nn

    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    openckpt.load(path, {"model": model, "optimizer": optimizer})
    return model.state_dict(), optimizer.state_dict()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Path]:
    tmp = tmp_path_factory.mktemp("reference")
    return run(tmp, "ref"), tmp / "ref.final"


def assert_same_state(a: Path, b: Path) -> None:
    (ma, oa), (mb, ob) = final_state(a), final_state(b)
    assert ma.keys() == mb.keys()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    sa, sb = oa["state"], ob["state"]
    assert isinstance(sa, dict) and isinstance(sb, dict) and sa.keys() == sb.keys()
    for k in sa:
        assert all(torch.equal(sa[k][n], sb[k][n]) for n in sa[k])
    assert oa["param_groups"] == ob["param_groups"]


CASES = [
    pytest.param(workers, async_save, stops, id=f"{label}-workers{workers}-{'async' if async_save else 'sync'}")
    for label, stops in [("mid-epoch", [5]), ("epoch-boundary", [7])]
    for workers in (0, 2)
    for async_save in (False, True)
] + [pytest.param(2, True, [3, 6], id="two-resumes-in-one-epoch-workers2-async")]


@pytest.mark.parametrize(("workers", "async_save", "stops"), CASES)
def test_resume_is_bitwise_identical(
    tmp_path: Path,
    reference: tuple[dict[str, object], Path],
    workers: int,
    async_save: bool,
    stops: list[int],
) -> None:
    ref, ref_final = reference
    extra = ["--workers", str(workers), *(["--async-save"] if async_save else [])]
    losses: list[str] = []
    indices: list[object] = []
    for i, stop in enumerate(stops):
        part = run(tmp_path, f"part{i}", "--stop-after", str(stop), *extra)
        assert part["step"] == stop
        losses += part["losses"]  # type: ignore[arg-type]
        indices += part["indices"]  # type: ignore[arg-type]
    rest = run(tmp_path, "rest", *extra)
    losses += rest["losses"]  # type: ignore[arg-type]
    indices += rest["indices"]  # type: ignore[arg-type]
    assert indices == ref["indices"]
    assert losses == ref["losses"]  # exact: float.hex of every loss
    assert_same_state(tmp_path / "rest.final", ref_final)


def test_workers_do_not_change_the_run(tmp_path: Path, reference: tuple[dict[str, object], Path]) -> None:
    """Per-sample randomness is seeded by (seed, epoch, index), so 2 workers reproduce the 0-worker run."""
    ref, _ = reference
    assert run(tmp_path, "w2", "--workers", "2")["losses"] == ref["losses"]


def test_resume_without_checkpoints_starts_fresh(tmp_path: Path, reference: tuple[dict[str, object], Path]) -> None:
    ref, _ = reference
    assert run(tmp_path, "fresh")["losses"] == ref["losses"]
