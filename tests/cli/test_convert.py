"""``openckpt convert``: foreign weights → an openckpt checkpoint, never unpickling arbitrary objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import openckpt

from .helpers import Invoke, tiny_model


class Payload:
    """A custom class: the weights-only loader must refuse it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_state_dict_pt_roundtrip(invoke: Invoke, tmp_path: Path, model: torch.nn.Module) -> None:
    torch.save(model.state_dict(), tmp_path / "model.pt")
    result = invoke("convert", tmp_path / "model.pt", tmp_path / "out")
    assert result.exit_code == 0, result.output
    _assert_same(load_file(tmp_path / "out" / "model.safetensors"), model.state_dict())
    fresh = tiny_model(seed=1)
    openckpt.load(tmp_path / "out", {"model": fresh})
    _assert_same(fresh.state_dict(), model.state_dict())
    assert invoke("verify", tmp_path / "out").exit_code == 0


def test_legacy_pickle_format(invoke: Invoke, tmp_path: Path, model: torch.nn.Module) -> None:
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    assert invoke("convert", tmp_path / "pytorch_model.bin", tmp_path / "out").exit_code == 0
    _assert_same(load_file(tmp_path / "out" / "model.safetensors"), model.state_dict())


def test_lightning_style_checkpoint(invoke: Invoke, tmp_path: Path, model: torch.nn.Module) -> None:
    ckpt = {
        "state_dict": model.state_dict(),
        "epoch": 3,
        "global_step": 120,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]}],
        "hyper_parameters": {"lr": 0.1, "betas": (0.9, 0.999)},
        "dtype": torch.float32,
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    result = invoke("convert", tmp_path / "last.ckpt", tmp_path / "out")
    assert result.exit_code == 0, result.output
    _assert_same(load_file(tmp_path / "out" / "model.safetensors"), model.state_dict())
    manifest = openckpt.read_manifest(tmp_path / "out")
    assert (manifest.training.step, manifest.training.epoch) == (120, 3)
    assert manifest.training.hyperparameters["hyper_parameters"] == {"lr": 0.1, "betas": [0.9, 0.999]}
    assert "dtype" not in manifest.training.hyperparameters
    assert "'dtype'" in result.stderr
    optimizer = load_file(tmp_path / "out" / "optimizer.safetensors")  # optimizer state: an entry of its own
    assert torch.equal(optimizer["0.state.0.exp_avg"], torch.ones(2))
    assert manifest.entries["optimizer"].kind == "state"


def test_nested_dicts_flatten_with_dots(invoke: Invoke, tmp_path: Path) -> None:
    torch.save({"encoder": {"layers": [torch.ones(2), torch.zeros(1)]}, "head": torch.eye(2)}, tmp_path / "m.pt")
    assert invoke("convert", tmp_path / "m.pt", tmp_path / "out").exit_code == 0
    assert set(load_file(tmp_path / "out" / "model.safetensors")) == {"encoder.layers.0", "encoder.layers.1", "head"}


def test_npz_and_routing_by_content(invoke: Invoke, tmp_path: Path) -> None:
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "mask": np.array([True, False]), "i": np.int16(3)}
    np.savez(tmp_path / "weights.pt", **arrays)  # an .npz under a misleading name
    (tmp_path / "weights.pt.npz").rename(tmp_path / "weights.pt")
    result = invoke("convert", tmp_path / "weights.pt", tmp_path / "out")
    assert result.exit_code == 0, result.output
    loaded = load_file(tmp_path / "out" / "model.safetensors")
    for name, array in arrays.items():
        assert np.array_equal(loaded[name].numpy(), array), name


def test_bfloat16_and_config(invoke: Invoke, tmp_path: Path) -> None:
    tensors = {"w": torch.randn(3, 3).to(torch.bfloat16)}
    torch.save(tensors, tmp_path / "w.npz")  # a torch file under an .npz name
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toy", "hidden_size": 3}))
    result = invoke("convert", tmp_path / "w.npz", tmp_path / "out", "--config", tmp_path / "config.json")
    assert result.exit_code == 0, result.output
    _assert_same(load_file(tmp_path / "out" / "model.safetensors"), tensors)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "toy"
    assert openckpt.read_manifest(tmp_path / "out").architecture.config == {"model_type": "toy", "hidden_size": 3}


def test_safetensors_source(invoke: Invoke, tmp_path: Path) -> None:
    tensors = {"a": torch.ones(2), "b": torch.arange(4)}
    save_file(tensors, tmp_path / "x.safetensors")
    assert invoke("convert", tmp_path / "x.safetensors", tmp_path / "out").exit_code == 0
    _assert_same(load_file(tmp_path / "out" / "model.safetensors"), tensors)


def test_custom_class_is_refused(invoke: Invoke, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    torch.save({"w": torch.ones(2), "payload": Payload()}, tmp_path / "evil.pt")
    result = invoke("convert", tmp_path / "evil.pt", tmp_path / "out")
    assert result.exit_code == 2
    assert "UnsafeFileError" in result.stderr and "evil.pt" in result.stderr
    assert "this must never run" not in result.output + capfd.readouterr().out
    assert not (tmp_path / "out").exists()


def test_npz_object_array_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", ok=np.ones(2), bad=np.array([{"x": 1}], dtype=object))
    result = invoke("convert", tmp_path / "obj.npz", tmp_path / "out")
    assert result.exit_code == 2
    assert "UnsafeFileError" in result.stderr and "'bad'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_existing_destination(invoke: Invoke, tmp_path: Path, ckpt: Path, model: torch.nn.Module) -> None:
    torch.save(model.state_dict(), tmp_path / "m.pt")
    result = invoke("convert", tmp_path / "m.pt", ckpt)
    assert result.exit_code == 2 and "CheckpointExistsError" in result.stderr
    assert invoke("convert", tmp_path / "m.pt", ckpt, "--overwrite").exit_code == 0


def test_openckpt_source_is_refused(invoke: Invoke, tmp_path: Path, ckpt: Path) -> None:
    result = invoke("convert", ckpt, tmp_path / "out")
    assert result.exit_code == 2 and "already an openckpt checkpoint" in result.stderr
