"""``openckpt diff``: per-tensor status and size of changes, across source kinds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import openckpt
from openckpt.format.readers.checkpoint import CheckpointSource

from .helpers import Invoke, tiny_model


def _diff_json(invoke: Invoke, a: Path, b: Path, code: int) -> dict[str, Any]:
    result = invoke("diff", a, b, "--json")
    assert result.exit_code == code, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_identical_checkpoints_are_not_read(invoke: Invoke, ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = ckpt.parent / "other"
    openckpt.save(other, {"model": tiny_model()})

    def refuse(self: CheckpointSource, name: str) -> torch.Tensor:
        raise AssertionError(f"read {name} although the manifests' blake3 are equal")

    monkeypatch.setattr(CheckpointSource, "read", refuse)
    data = _diff_json(invoke, ckpt, other, 0)
    assert data["summary"] == {"identical": 4, "changed": 0, "added": 0, "removed": 0, "bytes_changed": 0}
    assert all(t["note"] == "equal blake3" for t in data["tensors"])


def test_changed_tensor_metrics(invoke: Invoke, ckpt: Path, model: torch.nn.Module) -> None:
    before = model[2].weight.detach().clone()
    with torch.no_grad():
        model[2].weight[0, 0] += 0.5
    openckpt.save(ckpt.parent / "b", {"model": model})
    data = _diff_json(invoke, ckpt, ckpt.parent / "b", 1)
    changed = [t for t in data["tensors"] if t["status"] == "changed"]
    assert [t["name"] for t in changed] == ["model/2.weight"]
    assert changed[0]["max_abs"] == pytest.approx(0.5, rel=1e-6)
    expected = (model[2].weight.detach().double() - before.double()).norm() / before.double().norm()
    assert changed[0]["rel_l2"] == pytest.approx(expected.item())
    assert data["summary"]["bytes_changed"] == 2 * 8 * 4

    table = invoke("diff", ckpt, ckpt.parent / "b")
    assert table.exit_code == 1
    assert "model/2.weight" in table.stdout and "model/0.weight" not in table.stdout
    assert "model/0.weight" in invoke("diff", ckpt, ckpt.parent / "b", "--all").stdout


def test_added_removed_and_reshaped(invoke: Invoke, tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"kept": torch.ones(2), "gone": torch.ones(3), "grown": torch.ones(2, 2)}, a)
    save_file({"kept": torch.ones(2), "new": torch.ones(4), "grown": torch.ones(3, 2)}, b)
    data = _diff_json(invoke, a, b, 1)
    status = {t["name"]: t["status"] for t in data["tensors"]}
    assert status == {"kept": "identical", "gone": "removed", "new": "added", "grown": "changed"}
    grown = next(t for t in data["tensors"] if t["name"] == "grown")
    assert grown["note"] == "shape [2, 2] → [3, 2]" and grown["max_abs"] is None
    assert data["summary"]["bytes_changed"] == 4 * 4 + 6 * 4


def test_checkpoint_against_hf_layout_and_torch_file(invoke: Invoke, ckpt: Path, model: torch.nn.Module) -> None:
    hf = ckpt.parent / "hf"
    hf.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, hf / "model.safetensors")
    torch.save(model.state_dict(), ckpt.parent / "model.pt")
    for other in (hf, ckpt.parent / "model.pt"):
        data = _diff_json(invoke, ckpt, other, 0)
        assert {t["name"] for t in data["tensors"]} == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_dtype_change_and_nan(invoke: Invoke, tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"x": torch.tensor([1.0, 2.0]), "z": torch.zeros(2), "n": torch.tensor([1.0, 2.0])}, a)
    save_file(
        {"x": torch.tensor([1.0, 2.0], dtype=torch.float16), "z": torch.ones(2), "n": torch.tensor([1.0, math.nan])},
        b,
    )
    tensors = {t["name"]: t for t in _diff_json(invoke, a, b, 1)["tensors"]}
    assert tensors["x"]["status"] == "changed" and tensors["x"]["max_abs"] == 0.0
    assert tensors["x"]["note"] == "dtype F32 → F16"
    assert tensors["z"]["max_abs"] == 1.0 and tensors["z"]["rel_l2"] is None  # inf: a is all zeros
    assert tensors["n"]["max_abs"] is None  # NaN


def test_bitwise_identity_not_value_equality(invoke: Invoke, tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"x": torch.tensor([0.0, math.nan])}, a)
    save_file({"x": torch.tensor([-0.0, math.nan])}, b)
    assert _diff_json(invoke, a, a, 0)["summary"]["identical"] == 1  # NaN == NaN bitwise
    assert _diff_json(invoke, a, b, 1)["summary"]["changed"] == 1  # -0.0 is another value on disk


def test_missing_side_is_an_error(invoke: Invoke, ckpt: Path) -> None:
    result = invoke("diff", ckpt, ckpt.parent / "missing")
    assert result.exit_code == 3  # not found
    assert "missing" in result.stderr


def test_compare_reads_one_pair_at_a_time(tmp_path: Path) -> None:
    from openckpt.cli.diff import compare
    from openckpt.format.readers import open_source

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"x": torch.zeros(2), "y": torch.zeros(3)}, a)
    save_file({"x": torch.ones(2), "y": torch.ones(3)}, b)
    calls: list[str] = []
    with open_source(a) as sa, open_source(b) as sb:
        for side, source in (("a", sa), ("b", sb)):
            read = source.read

            def logged(name: str, side: str = side, read: Any = read) -> torch.Tensor:
                calls.append(f"{side}:{name}")
                return read(name)  # type: ignore[no-any-return]

            source.read = logged  # type: ignore[method-assign]
        compare(sa, sb)
    assert calls == ["a:x", "b:x", "a:y", "b:y"]
