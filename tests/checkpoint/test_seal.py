"""Sealing: a training save commits with blake3 only; the sha256s reach the manifest just after, atomically."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import openckpt
from openckpt.checkpoint.seal import is_sealed, wait_for_seals
from openckpt.cli.app import app
from openckpt.errors import IntegrityError
from openckpt.format.manifest import read_manifest, write_manifest


def state() -> dict[str, object]:
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 8)).sum().backward()
    optimizer.step()
    return {"model": model, "optimizer": optimizer, "rng": openckpt.RNGState()}


def assert_sealed_correctly(path: Path) -> None:
    manifest = read_manifest(path)
    assert is_sealed(manifest)
    for name, rec in manifest.files.items():
        assert rec.sha256 == hashlib.sha256((path / name).read_bytes()).hexdigest(), name


def test_save_returns_before_sha256_and_the_background_seal_completes_the_manifest(tmp_path: Path) -> None:
    committed = openckpt.save(tmp_path / "ckpt", state())
    tensor_files = {rec.file for rec in committed.tensors.values()}
    assert tensor_files and all(committed.files[f].sha256 is None for f in tensor_files)
    assert all(rec.sha256 is not None for name, rec in committed.files.items() if name not in tensor_files)
    wait_for_seals()
    assert_sealed_correctly(tmp_path / "ckpt")
    assert read_manifest(tmp_path / "ckpt").id == committed.id


def test_inline_sha256_commits_a_sealed_manifest(tmp_path: Path) -> None:
    committed = openckpt.save(tmp_path / "ckpt", state(), sha256="inline")
    assert is_sealed(committed)
    assert_sealed_correctly(tmp_path / "ckpt")


def test_an_unsealed_checkpoint_loads_verifies_and_seals_later(tmp_path: Path) -> None:
    """What a process killed between commit and seal leaves behind."""
    path = tmp_path / "ckpt"
    source = state()
    openckpt.save(path, source, sha256="inline")
    manifest = read_manifest(path)
    unsealed = {name: rec.model_copy(update={"sha256": None}) for name, rec in manifest.files.items()}
    write_manifest(path, manifest.model_copy(update={"files": unsealed}))

    target = state()
    openckpt.load(path, target, verify=True)
    assert torch.equal(target["model"][0].weight, source["model"][0].weight)  # type: ignore[index]
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 0, result.output

    sealed = openckpt.seal(path)
    assert is_sealed(sealed) and openckpt.seal(path) == sealed  # idempotent
    assert_sealed_correctly(path)
    assert CliRunner().invoke(app, ["verify", str(path)]).exit_code == 0


def test_retention_racing_the_sealer_leaves_only_sealed_checkpoints(tmp_path: Path) -> None:
    source = state()
    with openckpt.CheckpointManager(tmp_path, save_every=1, keep=[openckpt.keep_last(2)]) as manager:
        for step in range(1, 9):
            manager.save(source, step=step)
    wait_for_seals()
    kept = manager.checkpoints()
    assert [c.step for c in kept] == [7, 8]
    for c in kept:
        assert_sealed_correctly(c.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "environments", "step-00000007", "step-00000008"]


def test_a_file_changed_before_sealing_is_not_sealed(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    openckpt.save(path, state(), sha256="inline")
    manifest = read_manifest(path)
    unsealed = {name: rec.model_copy(update={"sha256": None}) for name, rec in manifest.files.items()}
    write_manifest(path, manifest.model_copy(update={"files": unsealed}))
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="not sealing"):
        openckpt.seal(path)
    assert not is_sealed(read_manifest(path))
