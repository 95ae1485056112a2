"""Distributed checkpoints with two CPU ranks (gloo): exact resume at the same world size, agreement on corruption,
what a single process may and may not load, and that nothing on disk is pickled."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import openckpt
from openckpt.digest import hash_file
from tests import zygote

SCRIPT = Path(__file__).with_name("dist_train.py")
STEPS = 17  # 40 samples, 2 ranks, batch 3 → 7 batches an epoch per rank; 17 steps cross two epoch boundaries
STOPS = [0, 5, 7]  # before the first step (empty optimizer state), mid-epoch, at the epoch boundary
WORLD = 2


def run(ckpt: Path, out: Path, *args: str) -> list[dict[str, object]]:
    """Run the two ranks in fresh processes; return each rank's report."""
    cmd = [sys.executable, str(SCRIPT), "--dir", str(ckpt), "--out", str(out), "--steps", str(STEPS), *args]
    zygote.run(cmd, check=True, timeout=120)
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference run (``ref/``) and a run stopped at each of STOPS then finished (``part0/`` … ``rest/``)."""
    tmp = tmp_path_factory.mktemp("dist")
    run(tmp / "ref-ckpt", tmp / "ref")
    for i, stop in enumerate(STOPS):
        run(tmp / "ckpt", tmp / f"part{i}", "--stop-after", str(stop))
    run(tmp / "ckpt", tmp / "rest")
    return tmp


def reports(tmp: Path, name: str) -> list[dict[str, object]]:
    return [json.loads((tmp / name / f"rank-{r}.json").read_text()) for r in range(WORLD)]


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys() and any(k.startswith("optimizer/") for k in ta)
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_resume_is_bitwise_identical_on_every_rank(runs: Path) -> None:
    ref = reports(runs, "ref")
    assert ref[0]["losses"] != ref[1]["losses"]  # the ranks really see different data and dropout
    for rank in range(WORLD):
        parts = [reports(runs, f"part{i}")[rank] for i in range(len(STOPS))] + [reports(runs, "rest")[rank]]
        assert [p["step"] for p in parts] == [*STOPS, STEPS]
        losses = [loss for p in parts for loss in p["losses"]]  # type: ignore[attr-defined]
        indices = [idx for p in parts for idx in p["indices"]]  # type: ignore[attr-defined]
        assert indices == ref[rank]["indices"]
        assert losses == ref[rank]["losses"]  # exact: float.hex of every loss
        assert_same_tensors(runs / "rest" / f"rank-{rank}.safetensors", runs / "ref" / f"rank-{rank}.safetensors")


def test_manifest_records_the_layout_and_nothing_is_pickled(runs: Path) -> None:
    ckpt = runs / "ckpt"
    assert (ckpt / "LATEST").read_text().strip() == "step-00000007"
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("step-")) == ["step-00000005", "step-00000007"]
    path = ckpt / "step-00000007"
    manifest = openckpt.read_manifest(path)
    layout = manifest.distributed
    assert layout is not None and layout["world_size"] == WORLD and layout["ranks"] == ["rank-00000", "rank-00001"]
    assert layout["global_entries"] == ["model", "optimizer"]
    assert set(layout["local_entries"]) == {"scheduler", "loader", "progress", "rng"}
    assert manifest.training.step == 7
    chunks = layout["tensors"]["model/0.weight"]
    assert chunks["shape"] == [32, 8] and chunks["chunks"][0]["file"].startswith("dcp/")
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
    assert on_disk == set(manifest.files) | {"openckpt.json"}
    assert all(name.endswith((".safetensors", ".json")) for name in on_disk)  # no DCP .metadata pickle
    for name, record in manifest.files.items():
        assert hash_file(path / name) == record.digest()


def plain_model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))


def test_one_process_refuses_rank_local_state_of_two_ranks(runs: Path) -> None:
    model = plain_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(openckpt.StateMismatchError, match="saved by 2 ranks, loading into 1"):
        openckpt.load(runs / "ckpt" / "step-00000007", {"model": model, "rng": openckpt.RNGState()})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_a_mismatch_leaves_model_and_fresh_optimizer_untouched(runs: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))  # narrower
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(openckpt.StateMismatchError, match="in the checkpoint"):
        openckpt.load(runs / "ckpt" / "step-00000007", {"optimizer": optimizer, "model": model})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not optimizer.state  # the state torch allocated for the checks is dropped again


@pytest.mark.parametrize(
    ("checkpoint", "dump"),
    [("ckpt/step-00000007", "part2/rank-0.safetensors"), ("rest/final", "rest/rank-0.safetensors")],
    ids=["manager-checkpoint", "openckpt.save"],
)
def test_one_process_loads_the_model_and_optimizer_resharded(runs: Path, checkpoint: str, dump: str) -> None:
    model = plain_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    manifest = openckpt.load(runs / checkpoint, {"model": model, "optimizer": optimizer})
    assert manifest.distributed is not None and manifest.distributed["world_size"] == WORLD
    saved = load_file(str(runs / dump))  # what rank 0 held when the checkpoint was saved
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[f"model/{name}"])
    for i, per_param in optimizer.state_dict()["state"].items():
        for name, value in per_param.items():
            assert torch.equal(value, saved[f"optimizer/{i}/{name}"])


def test_ranks_agree_to_skip_a_corrupt_checkpoint(runs: Path, tmp_path: Path) -> None:
    """Each rank verifies part of the DCP files; the one that finds the damage makes every rank fall back."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(runs / "ckpt", ckpt)
    victim = sorted((ckpt / "step-00000007" / "dcp").iterdir())[-1]  # verified by rank 1 only
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    rest = run(ckpt, tmp_path / "out")
    ref = reports(runs, "ref")
    for rank in range(WORLD):
        assert rest[rank]["losses"] == ref[rank]["losses"][5:]  # resumed from step 5, exactly


def test_a_corrupt_file_fails_a_single_process_load(runs: Path, tmp_path: Path) -> None:
    path = tmp_path / "step"
    shutil.copytree(runs / "ckpt" / "step-00000007", path)
    victim = sorted((path / "dcp").iterdir())[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(openckpt.IntegrityError, match="blake3"):
        openckpt.load(path, {"model": plain_model()})


def test_fsdp2_shards_save_load_and_reshard_into_one_process(tmp_path: Path) -> None:
    """Sharded DTensors go through DCP chunk by chunk: same-world load is exact, one process gets full tensors."""
    reps = run(tmp_path / "ckpt", tmp_path / "out", "--fsdp")
    assert all(r == {"sharded": True, "model": True, "optimizer": True} for r in reps)
    manifest = openckpt.read_manifest(tmp_path / "ckpt")
    assert manifest.distributed is not None
    chunks = manifest.distributed["tensors"]["model/0.weight"]["chunks"]
    assert sorted(c["offsets"] for c in chunks) == [[0, 0], [16, 0]]  # one row block per rank
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4))
    openckpt.load(tmp_path / "ckpt", {"model": model})
    full = load_file(str(tmp_path / "out" / "full.safetensors"))
    assert all(torch.equal(full[k], v) for k, v in model.state_dict().items())
