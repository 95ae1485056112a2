"""``openckpt inspect`` on checkpoints, safetensors files, Hugging Face directories and foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import openckpt

from .helpers import Invoke, tiny_model


def test_checkpoint_tables(invoke: Invoke, ckpt: Path) -> None:
    result = invoke("inspect", ckpt)
    assert result.exit_code == 0, result.output
    for text in ("openckpt checkpoint", "model/0.weight", "[8, 4]", "F32", "Sequential", "parameters"):
        assert text in result.stdout


def test_checkpoint_json_matches_manifest(invoke: Invoke, ckpt: Path) -> None:
    openckpt.save(
        ckpt.parent / "with-lineage",
        {"model": tiny_model()},
        training={"step": 7, "metrics": {"loss": 0.5}},
        lineage={"base_model": "org/base", "license": "apache-2.0"},
    )
    result = invoke("inspect", ckpt.parent / "with-lineage", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    manifest = openckpt.read_manifest(ckpt.parent / "with-lineage")
    assert data["kind"] == "openckpt"
    assert {t["name"] for t in data["tensors"]} == set(manifest.tensors)
    assert data["architecture"]["parameters"] == 4 * 8 + 8 + 8 * 2 + 2
    assert data["training"]["step"] == 7
    assert data["lineage"] == {"base_model": "org/base", "license": "apache-2.0"}
    assert data["files"]["model.safetensors"] == manifest.files["model.safetensors"].size
    assert data["total_bytes"] == sum(t["bytes"] for t in data["tensors"])


def test_safetensors_file(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3, 2, dtype=torch.bfloat16), "b": torch.arange(5)}, path, metadata={"who": "me"})
    data = json.loads(invoke("inspect", path, "--json").stdout)
    assert data["kind"] == "safetensors"
    assert {(t["name"], t["dtype"], tuple(t["shape"]), t["bytes"]) for t in data["tensors"]} == {
        ("a", "BF16", (3, 2), 12),
        ("b", "I64", (5,), 40),
    }
    assert data["metadata"] == {"who": "me"}
    assert data["architecture"]["parameters"] == 6  # integer tensors are not parameters


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny GPT-2 saved by transformers, once whole and once in shards with an index."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    root = tmp_path_factory.mktemp("hf")
    model.save_pretrained(root / "single")
    model.save_pretrained(root / "sharded", max_shard_size="8KB")
    assert (root / "sharded" / "model.safetensors.index.json").is_file()
    return root / "single", root / "sharded"


def test_hugging_face_directories(invoke: Invoke, hf_dirs: tuple[Path, Path]) -> None:
    single, sharded = (json.loads(invoke("inspect", d, "--json").stdout) for d in hf_dirs)
    assert single["kind"] == sharded["kind"] == "huggingface"
    assert single["architecture"]["config"]["model_type"] == "gpt2"
    assert [t["name"] for t in single["tensors"]] and {t["name"] for t in single["tensors"]} == {
        t["name"] for t in sharded["tensors"]
    }
    assert len({t["file"] for t in sharded["tensors"]}) > 1
    assert single["architecture"]["parameters"] == sharded["architecture"]["parameters"] > 0
    table = invoke("inspect", hf_dirs[1])
    assert table.exit_code == 0 and "gpt2" in table.stdout and "transformer.wte.weight" in table.stdout


def test_torch_file_shows_values_and_notes(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": tiny_model().state_dict(), "epoch": 2, "device": torch.device("cpu")}, path)
    data = json.loads(invoke("inspect", path, "--json").stdout)
    assert data["kind"] == "torch"
    assert "0.weight" in {t["name"] for t in data["tensors"]}
    assert data["values"] == {"epoch": 2}
    assert any("'device'" in note for note in data["notes"])


def test_missing_path_is_an_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("inspect", tmp_path / "nope.safetensors")
    assert result.exit_code == 3  # not found
    assert "error" in result.stderr and "nope.safetensors" in result.stderr


def test_unrecognised_file_is_an_error(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"GGUF not what it claims")
    result = invoke("inspect", path)
    assert result.exit_code == 2
    assert "FormatError" in result.stderr and len(result.stderr.strip().splitlines()) == 1
