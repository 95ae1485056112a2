"""Damaged checkpoints and mismatched targets raise typed errors naming the file, and leave the target untouched."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import openckpt
from openckpt.errors import (
    IntegrityError,
    ManifestError,
    NoValidCheckpointError,
    OpenckptError,
    StateMismatchError,
    UnsupportedStateError,
)


def make(seed: int, width: int = 16, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, width), nn.Tanh(), nn.Linear(width, 2)).to(dtype)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 8, dtype=dtype)).sum().backward()
    optimizer.step()
    return model, optimizer


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    tensors = [t.clone() for t in model.state_dict().values()]
    for st in optimizer.state_dict()["state"].values():
        tensors += [t.clone() for t in st.values()]
    return tensors


def assert_untouched(before: list[torch.Tensor], model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    after = snapshot(model, optimizer)
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    model, optimizer = make(0)
    openckpt.save(tmp_path / "ckpt", {"model": model, "optimizer": optimizer, "rng": openckpt.RNGState()})
    openckpt.seal(tmp_path / "ckpt")  # before tests tamper with it
    return tmp_path / "ckpt"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def break_manifest_digest(directory: Path) -> None:
    manifest = json.loads((directory / "openckpt.json").read_text())
    manifest["files"]["optimizer.safetensors"]["blake3"] = "0" * 64
    (directory / "openckpt.json").write_text(json.dumps(manifest))


DAMAGE: list[tuple[str, Callable[[Path], None], type[OpenckptError], str]] = [
    ("truncated-weights", lambda d: truncate(d / "model.safetensors"), IntegrityError, "model.safetensors"),
    ("bit-flip-weights", lambda d: flip_last_byte(d / "model.safetensors"), IntegrityError, "model.safetensors"),
    ("bit-flip-optimizer", lambda d: flip_last_byte(d / "optimizer.safetensors"), IntegrityError, "optimizer"),
    ("missing-file", lambda d: (d / "optimizer.safetensors").unlink(), IntegrityError, "optimizer.safetensors"),
    ("digest-mismatch", break_manifest_digest, IntegrityError, "optimizer.safetensors"),
    ("missing-manifest", lambda d: (d / "openckpt.json").unlink(), ManifestError, "openckpt.json"),
    ("malformed-manifest", lambda d: (d / "openckpt.json").write_text("{not json"), ManifestError, "openckpt.json"),
    ("manifest-not-object", lambda d: (d / "openckpt.json").write_text("[]"), ManifestError, "openckpt.json"),
    ("future-version", lambda d: (d / "openckpt.json").write_text('{"format_version": "9.0"}'), ManifestError,
     "openckpt.json"),
    ("bad-state-json", lambda d: (d / "state.json").write_text("{"), IntegrityError, "state.json"),
]  # fmt: skip


@pytest.mark.parametrize(("damage", "error", "names"), [pytest.param(*d[1:], id=d[0]) for d in DAMAGE])
def test_damage_is_detected_before_anything_changes(
    ckpt: Path, damage: Callable[[Path], None], error: type[OpenckptError], names: str
) -> None:
    damage(ckpt)
    model, optimizer = make(1)
    before = snapshot(model, optimizer)
    with pytest.raises(error, match=re.escape(names)) as info:
        openckpt.load(ckpt, {"model": model, "optimizer": optimizer, "rng": openckpt.RNGState()})
    assert info.value.path is not None and names in str(info.value.path)
    assert_untouched(before, model, optimizer)


def test_truncation_is_caught_even_without_digests(ckpt: Path) -> None:
    truncate(ckpt / "model.safetensors")
    model, optimizer = make(1)
    before = snapshot(model, optimizer)
    with pytest.raises(IntegrityError, match=r"model\.safetensors"):
        openckpt.load(ckpt, {"model": model, "optimizer": optimizer}, verify=False)
    assert_untouched(before, model, optimizer)


@pytest.mark.parametrize(
    ("width", "dtype", "message"),
    [
        (17, torch.float32, r"0\.bias is F32\[16\] in the checkpoint, F32\[17\] in the model"),
        (16, torch.float64, r"is F32\[16\] in the checkpoint, F64\[16\] in the model"),
    ],
    ids=["shape", "dtype"],
)
def test_mismatched_target_is_refused_untouched(ckpt: Path, width: int, dtype: torch.dtype, message: str) -> None:
    model, optimizer = make(1, width, dtype)
    before = snapshot(model, optimizer)
    with pytest.raises(StateMismatchError, match=message):
        openckpt.load(ckpt, {"model": model, "optimizer": optimizer})
    assert_untouched(before, model, optimizer)


def test_missing_and_unexpected_keys_are_named(ckpt: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2), nn.Linear(2, 2))
    with pytest.raises(StateMismatchError, match=r"missing from checkpoint: 3\.bias, 3\.weight"):
        openckpt.load(ckpt, {"model": model})
    with pytest.raises(StateMismatchError, match="no entries scheduler"):
        openckpt.load(ckpt, {"scheduler": {}})


def test_optimizer_over_other_parameters_is_refused_before_mutation(ckpt: Path) -> None:
    model, _ = make(1)
    other = torch.optim.AdamW(model[0].parameters())  # only the first layer
    before = snapshot(model, other)
    with pytest.raises(StateMismatchError, match="param group 0 differs"):
        openckpt.load(ckpt, {"model": model, "optimizer": other})
    assert_untouched(before, model, other)


def test_unsupported_state_fails_the_save_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedStateError, match=r"lambda|function"):
        openckpt.save(tmp_path / "x", {"extra": {"fn": lambda: 0}})
    assert list(tmp_path.iterdir()) == []


def test_restore_latest_falls_back_to_the_newest_valid_checkpoint(tmp_path: Path) -> None:
    model, optimizer = make(0)
    manager = openckpt.CheckpointManager(tmp_path)
    for step in (1, 2, 3):
        with torch.no_grad():
            model[0].bias.fill_(step)
        manager.save({"model": model, "optimizer": optimizer}, step=step)
    flip_last_byte(tmp_path / "step-00000003" / "model.safetensors")
    target, target_opt = make(5)
    manifest = manager.restore_latest({"model": target, "optimizer": target_opt})
    assert manifest is not None and manifest.training.step == 2
    assert bool((target[0].bias == 2).all())
    for step in (1, 2):
        (tmp_path / f"step-{step:08d}" / "openckpt.json").unlink()
    with pytest.raises(NoValidCheckpointError, match="3 checkpoints, none loads"):
        manager.restore_latest({"model": target, "optimizer": target_opt})


def test_fresh_directory_restores_nothing(tmp_path: Path) -> None:
    model, _ = make(0)
    assert openckpt.CheckpointManager(tmp_path / "new").restore_latest({"model": model}) is None
