"""The card of an export is titled after its run, not after the folder it is written to."""

from __future__ import annotations

from pathlib import Path

import torch

from openckpt import CheckpointManager, export


def test_an_exported_card_is_titled_after_its_run(tmp_path: Path) -> None:
    with CheckpointManager(tmp_path / "runs" / "demo") as manager:
        manager.save({"model": torch.nn.Linear(2, 2)}, step=30)
    export(tmp_path / "runs" / "demo" / "step-00000030", tmp_path / "publish")
    assert "# demo" in (tmp_path / "publish" / "README.md").read_text().splitlines()
    export(tmp_path / "runs" / "demo" / "step-00000030", tmp_path / "named", name="tiny-linear")
    assert "# tiny-linear" in (tmp_path / "named" / "README.md").read_text().splitlines()
