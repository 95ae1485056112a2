from __future__ import annotations

from pathlib import Path

import pytest
import torch

import openckpt
from openckpt.checkpoint.retention import CheckpointInfo, to_delete
from openckpt.errors import AsyncSaveError


def steps(directory: Path) -> list[int]:
    return [c.step for c in openckpt.CheckpointManager(directory).checkpoints()]


def test_retention_policies_combine_and_never_drop_the_newest() -> None:
    infos = [CheckpointInfo(Path(f"s{i}"), i, {"loss": float(10 - i % 4)}) for i in range(1, 11)]
    kept = set(range(1, 11)) - {c.step for c in to_delete(infos, [openckpt.keep_last(2)])}
    assert kept == {9, 10}
    best = [openckpt.keep_best(2, "loss", "min")]
    assert set(range(1, 11)) - {c.step for c in to_delete(infos, best)} == {3, 7, 10}
    every = [openckpt.keep_every(5), openckpt.keep_last(1)]
    assert set(range(1, 11)) - {c.step for c in to_delete(infos, every)} == {5, 10}
    assert to_delete(infos, []) == []


def test_manager_saves_every_n_steps_keeps_policy_and_points_latest(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    progress = openckpt.TrainingProgress()
    state = {"model": model, "progress": progress}
    with openckpt.CheckpointManager(tmp_path, save_every=3, keep=[openckpt.keep_last(2)]) as manager:
        saved = []
        assert not manager.maybe_save(state)  # step 0: nothing trained yet
        for step in range(1, 11):
            progress.step = step
            saved.append(manager.maybe_save(state, metrics={"loss": 1.0 / step}))
    assert [i + 1 for i, s in enumerate(saved) if s] == [3, 6, 9]
    assert steps(tmp_path) == [6, 9]
    assert (tmp_path / "LATEST").read_text() == "step-00000009\n"
    manifest = openckpt.read_manifest(tmp_path / "step-00000009")
    parent = openckpt.read_manifest(tmp_path / "step-00000006")
    assert manifest.lineage.parent == parent.id, "each checkpoint records the one before it"
    assert manifest.training.step == 9 and manifest.training.metrics == {"loss": pytest.approx(1 / 9)}


def test_async_save_snapshots_state_at_call_time(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 4)
    with torch.no_grad():
        model.weight.fill_(1.0)
    manager = openckpt.CheckpointManager(tmp_path, async_save=True)
    manager.save({"model": model}, step=1)
    with torch.no_grad():
        model.weight.fill_(2.0)  # training goes on while the save is written
    manager.close()
    target = torch.nn.Linear(4, 4)
    openckpt.load(tmp_path / "step-00000001", {"model": target})
    assert bool((target.weight == 1.0).all())


def test_async_failure_is_raised_on_the_next_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from openckpt.checkpoint import manager as manager_module

    real = manager_module.commit_snapshot

    def disk_full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    model = torch.nn.Linear(2, 2)
    manager = openckpt.CheckpointManager(tmp_path, async_save=True)
    monkeypatch.setattr(manager_module, "commit_snapshot", disk_full)
    manager.save({"model": model}, step=1)
    with pytest.raises(AsyncSaveError, match="No space left on device"):
        manager.save({"model": model}, step=2)
    monkeypatch.setattr(manager_module, "commit_snapshot", real)
    manager.save({"model": model}, step=2)
    manager.close()
    assert steps(tmp_path) == [2]


def test_leftovers_of_killed_saves_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / ".step-00000004.tmp-0123abcd").mkdir()
    (tmp_path / ".LATEST.tmp-99aa").write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    openckpt.CheckpointManager(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_nan_metrics_survive_the_manifest(tmp_path: Path) -> None:
    openckpt.save(tmp_path / "c", {"model": torch.nn.Linear(1, 1)}, training={"metrics": {"loss": float("nan")}})
    assert str(openckpt.read_manifest(tmp_path / "c").training.metrics["loss"]) == "nan"
