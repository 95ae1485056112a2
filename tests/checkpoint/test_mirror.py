"""CheckpointManager with a mirror in a directory (``file://``): what goes up, in which order, what comes back."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

import openckpt
from openckpt.checkpoint.mirror import DirectoryMirror, open_mirror, register_mirror
from openckpt.errors import MirrorError, NoValidCheckpointError


class OrderedMirror(DirectoryMirror):
    """A directory mirror that also remembers the names of each ``put``, in order."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.batches: list[list[str]] = []

    def put(self, files: Mapping[str, Path | bytes]) -> None:
        super().put(files)
        self.batches.append(sorted(files))


def make_state(seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return {"model": model, "optimizer": optimizer, "progress": openckpt.TrainingProgress()}


def test_each_checkpoint_goes_up_whole_before_latest_moves_and_retention_follows(tmp_path: Path) -> None:
    mirror = OrderedMirror(str(tmp_path / "mirror"))
    state = make_state(0)
    with openckpt.CheckpointManager(tmp_path / "run", keep=[openckpt.keep_last(2)], mirror=mirror) as manager:
        for step in (1, 2, 3):
            manager.save(state, step=step)
            manager.wait()
    files = mirror.list("")
    assert {n.split("/")[0] for n in files} == {"LATEST", "environments", "step-00000002", "step-00000003"}
    assert mirror.read("LATEST") == b"step-00000003\n"
    local = {p.relative_to(tmp_path / "run").as_posix() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert set(files) == local
    steps = [b for b in mirror.batches if b != ["LATEST"]]
    assert [b for b in mirror.batches if b == ["LATEST"]] and len(steps) == 3
    for batch, after in zip(steps, mirror.batches[1::2], strict=True):
        assert after == ["LATEST"] and all(n.startswith(("step-", "environments/")) for n in batch)
    sealed = openckpt.read_manifest(tmp_path / "mirror" / "step-00000003")
    assert all(rec.sha256 for rec in sealed.files.values())  # the mirror gets the sealed manifest


def test_restore_latest_in_an_empty_directory_fetches_from_the_mirror(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'mirror'}"
    saved = make_state(1)
    with openckpt.CheckpointManager(tmp_path / "a", mirror=url, async_save=True) as manager:
        manager.save(saved, step=5)
    restored = make_state(2)
    fresh = openckpt.CheckpointManager(tmp_path / "b", mirror=url)
    manifest = fresh.restore_latest(restored)
    assert manifest is not None and manifest.training.step == 5
    a, b = saved["model"], restored["model"]
    assert isinstance(a, torch.nn.Module) and isinstance(b, torch.nn.Module)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert (tmp_path / "b" / "LATEST").read_text() == "step-00000005\n"
    assert [c.step for c in fresh.checkpoints()] == [5]


def test_a_corrupt_mirrored_checkpoint_falls_back_to_the_one_before(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'mirror'}"
    state = make_state(3)
    with openckpt.CheckpointManager(tmp_path / "a", mirror=url) as manager:
        manager.save(state, step=1)
        manager.save(state, step=2)
    weights = tmp_path / "mirror" / "step-00000002" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    manifest = openckpt.CheckpointManager(tmp_path / "b", mirror=url).restore_latest(make_state(4))
    assert manifest is not None and manifest.training.step == 1
    assert openckpt.CheckpointManager(tmp_path / "c").restore_latest(make_state(4)) is None


def test_an_upload_failure_is_raised_by_the_next_call_and_later_saves_still_go_up(tmp_path: Path) -> None:
    blocker = tmp_path / "mirror"
    blocker.write_bytes(b"a file where the mirror's directory should be")
    state = make_state(5)
    manager = openckpt.CheckpointManager(tmp_path / "run", mirror=str(blocker))
    manager.save(state, step=1)
    with pytest.raises(MirrorError, match="mirroring to"):
        manager.wait()
    manager.wait()  # raised once
    blocker.unlink()
    manager.save(state, step=2)
    manager.close()
    assert DirectoryMirror(str(blocker)).read("LATEST") == b"step-00000002\n"


def test_mirror_urls_resolve_by_prefix(tmp_path: Path) -> None:
    assert isinstance(open_mirror(tmp_path), DirectoryMirror)
    assert open_mirror(f"file://{tmp_path}").root == tmp_path
    assert type(open_mirror("hf://buckets/alice/run-x/sub")).__name__ == "BucketMirror"
    register_mirror("mem://", lambda url: DirectoryMirror(tmp_path / url.removeprefix("mem://")))
    assert open_mirror("mem://x").root == tmp_path / "x"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no mirror serves"):
        open_mirror("ftp://host/run")


class HeldMirror(DirectoryMirror):
    """A directory mirror whose uploads wait until the test lets them go."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.release = threading.Event()

    def put(self, files: Mapping[str, Path | bytes]) -> None:
        assert self.release.wait(timeout=120)
        super().put(files)


def test_saves_never_wait_for_uploads_a_newer_one_replaces_a_waiting_one_and_retention_spares_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = HeldMirror(str(tmp_path / "mirror"))
    state = make_state(6)
    manager = openckpt.CheckpointManager(tmp_path / "run", keep=[openckpt.keep_last(1)], mirror=mirror, recipe=False)
    for step in (1, 2, 3):  # every save returns while the first upload is still held
        manager.save(state, step=step)
    assert not mirror.release.is_set()
    assert "step-00000002 is not mirrored: step-00000003 replaced it" in caplog.text
    assert [c.step for c in manager.checkpoints()] == [1, 3]  # step 1 is uploading: retention leaves it
    mirror.release.set()
    manager.close()
    assert mirror.read("LATEST") == b"step-00000003\n"
    assert {n.split("/")[0] for n in mirror.list("")} == {"LATEST", "step-00000001", "step-00000003"}


def test_a_reproduction_neither_reads_nor_writes_the_runs_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"file://{tmp_path / 'mirror'}"
    with openckpt.CheckpointManager(tmp_path / "run", mirror=url, recipe=False) as manager:
        manager.save(make_state(7), step=3)
    monkeypatch.setenv("OPENCKPT_REPRODUCE_DIR", str(tmp_path / "again"))
    with openckpt.CheckpointManager(tmp_path / "run", mirror=url, recipe=False) as again:
        assert again.mirror is None and again.restore_latest(make_state(8)) is None  # from scratch, as reproduced
        again.save(make_state(8), step=1)
    assert DirectoryMirror(url).read("LATEST") == b"step-00000003\n"


def test_a_mirror_whose_checkpoints_are_all_damaged_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'mirror'}"
    with openckpt.CheckpointManager(tmp_path / "a", mirror=url, recipe=False) as manager:
        manager.save(make_state(9), step=1)
        manager.save(make_state(9), step=2)
    (tmp_path / "mirror" / "step-00000002" / "openckpt.json").unlink()
    (tmp_path / "mirror" / "step-00000001" / "openckpt.json").write_text("{not json")
    with pytest.raises(NoValidCheckpointError, match="2 checkpoints, none loads"):
        openckpt.CheckpointManager(tmp_path / "b", mirror=url).restore_latest(make_state(10))
