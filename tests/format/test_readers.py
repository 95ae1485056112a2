"""Readers of foreign and native tensor files: routing by content, weights-only loading, flattening, layouts."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import openckpt
from openckpt.errors import (
    CheckpointNotFoundError,
    FormatError,
    IntegrityError,
    ManifestError,
    OpenckptError,
    UnsafeFileError,
    UnsupportedStateError,
)
from openckpt.format.manifest import EntryRecord, FileRecord, Manifest, write_manifest
from openckpt.format.readers import TensorEntry, architecture_of, open_source, sniff
from openckpt.format.readers.nested import split_nested
from openckpt.format.readers.torchfile import load_weights_only
from openckpt.format.tensorfile import write_tensors


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))


# -- routing -------------------------------------------------------------------------------------------------------


def test_sniff_by_content_not_extension(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(1)}, tmp_path / "a.npz")
    torch.save({"w": torch.ones(1)}, tmp_path / "b.safetensors", _use_new_zipfile_serialization=False)
    np.savez(tmp_path / "c.pt", w=np.ones(1))
    save_file({"w": torch.ones(1)}, tmp_path / "d.bin")
    openckpt.save(tmp_path / "ck", {"model": _model()})
    (tmp_path / "hf").mkdir()
    save_file({"w": torch.ones(1)}, tmp_path / "hf" / "model.safetensors")
    assert sniff(tmp_path / "a.npz") == "torch"
    assert sniff(tmp_path / "b.safetensors") == "torch-legacy"
    assert sniff(tmp_path / "c.pt.npz") == "npz"
    assert sniff(tmp_path / "d.bin") == "safetensors"
    assert sniff(tmp_path / "ck") == "openckpt"
    assert sniff(tmp_path / "hf") == "huggingface"


def test_sniff_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError):
        sniff(tmp_path / "missing.pt")
    with pytest.raises(FormatError, match="none of"):
        sniff(tmp_path)
    (tmp_path / "x.gguf").write_bytes(b"GGUX\x03\x00\x00\x00")
    with pytest.raises(FormatError, match="unrecognised"):
        sniff(tmp_path / "x.gguf")
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    assert sniff(tmp_path / "other.zip") == "zip"  # a container: its members are opened one by one


def test_pickle_posing_as_safetensors_in_hf_dir(tmp_path: Path) -> None:
    with open(tmp_path / "model.safetensors", "wb") as f:
        pickle.dump({"w": [1.0]}, f)
    with pytest.raises(FormatError):
        open_source(tmp_path)


# -- torch, weights-only -------------------------------------------------------------------------------------------


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("never",))


@pytest.mark.parametrize("zipped", [True, False])
def test_unsafe_torch_file_is_refused(tmp_path: Path, zipped: bool) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "x": Evil()}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafeFileError, match="refusing to load") as info:
        open_source(path)
    assert isinstance(info.value, OpenckptError) and info.value.path == path
    assert "\n" not in str(info.value)


def test_plain_pickle_and_torchscript_are_refused(tmp_path: Path) -> None:
    with open(tmp_path / "plain.pt", "wb") as f:
        pickle.dump({"w": 1}, f, protocol=4)
    with pytest.raises(UnsafeFileError):
        load_weights_only(tmp_path / "plain.pt", mmap=False)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    with open_source(tmp_path / "scripted.pt") as source:  # its data, read statically: convert refuses it
        assert source.refusal is not None and "TorchScript" in source.refusal


def test_corrupt_torch_zip(tmp_path: Path) -> None:
    torch.save({"w": torch.ones(100)}, tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError):
        open_source(tmp_path / "m.pt")


def test_torch_source_lists_and_reads(tmp_path: Path) -> None:
    sd = _model().state_dict()
    torch.save({"model": sd, "step": 5}, tmp_path / "m.pt")
    with open_source(tmp_path / "m.pt") as source:
        assert source.kind == "torch"
        assert list(source.tensors) == list(sd)
        assert source.values == {"step": 5}
        assert source.notes == ["weights taken from 'model'"]
        for name, t in sd.items():
            assert torch.equal(source.read(name), t)
            assert source.tensors[name] == TensorEntry(name, "F32", tuple(t.shape))


def test_torch_unsupported_tensors(tmp_path: Path) -> None:
    torch.save({"c": torch.ones(2, dtype=torch.complex64)}, tmp_path / "c.pt")
    with pytest.raises(UnsupportedStateError, match="'c'"):
        open_source(tmp_path / "c.pt")
    torch.save({"s": torch.eye(2).to_sparse()}, tmp_path / "s.pt")
    with pytest.raises(UnsupportedStateError, match="sparse"):
        open_source(tmp_path / "s.pt")


# -- nested objects ------------------------------------------------------------------------------------------------


def test_split_nested() -> None:
    t = torch.ones(1)
    split = split_nested(
        {
            "state_dict": {"enc": {"layers": [t, t]}, "head.w": t, "flag": True},
            "epoch": 2,
            "lr": [0.1, 0.01],
            "opt": {"state": {0: {"m": t}}},
            "device": torch.device("cpu"),
            "nan": math.nan,
        }
    )
    assert list(split.tensors) == ["enc.layers.0", "enc.layers.1", "head.w"]
    assert split.values == {"flag": True, "epoch": 2, "lr": [0.1, 0.01]}
    assert split.notes[0] == "weights taken from 'state_dict'"
    assert any("'opt'" in n and "1 tensor " in n for n in split.notes)
    assert any("'device'" in n for n in split.notes) and any("'nan'" in n for n in split.notes)


def test_split_nested_without_wrapper_and_bare_tensor() -> None:
    t = torch.ones(1)
    split = split_nested({"encoder": {"w": t}, 3: {"b": t}, "cfg": {"n": 1, "k": (1, 2)}})
    assert list(split.tensors) == ["encoder.w", "3.b"]
    assert split.values == {"cfg": {"n": 1, "k": [1, 2]}}
    assert list(split_nested(t, root_name="weights").tensors) == ["weights"]
    with pytest.raises(FormatError, match="same name"):
        split_nested({"a.b": t, "a": {"b": t}})


# -- npz -----------------------------------------------------------------------------------------------------------


def test_npz_arrays(tmp_path: Path) -> None:
    arrays = {
        "big_endian": np.arange(4, dtype=">f4"),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "scalar": np.array(2.5),
        "flags": np.array([True, False]),
    }
    np.savez_compressed(tmp_path / "a.npz", **arrays)
    with open_source(tmp_path / "a.npz") as source:
        assert {n: e.dtype for n, e in source.tensors.items()} == {
            "big_endian": "F32",
            "fortran": "I32",
            "scalar": "F64",
            "flags": "BOOL",
        }
        for name, array in arrays.items():
            t = source.read(name)
            assert t.shape == array.shape and np.array_equal(t.numpy(), array), name


def test_npz_refusals(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", a=np.array([None, 1], dtype=object))
    with pytest.raises(UnsafeFileError, match="object array"):
        open_source(tmp_path / "obj.npz")
    np.savez(tmp_path / "cplx.npz", a=np.ones(2, dtype=np.complex64))
    with pytest.raises(UnsupportedStateError, match="complex64"):
        open_source(tmp_path / "cplx.npz")


# -- Hugging Face directories --------------------------------------------------------------------------------------


def _sharded(tmp_path: Path, weight_map: dict[str, str]) -> Path:
    save_file({"a": torch.ones(2)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"b": torch.zeros(3)}, tmp_path / "model-00002-of-00002.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return tmp_path


def test_hf_sharded(tmp_path: Path) -> None:
    d = _sharded(tmp_path, {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"})
    with open_source(d) as source:
        assert source.kind == "huggingface"
        assert source.tensors["b"].file == "model-00002-of-00002.safetensors"
        assert torch.equal(source.read("b"), torch.zeros(3))


def test_hf_index_errors(tmp_path: Path) -> None:
    (tmp_path / "wrong").mkdir()
    d = _sharded(tmp_path / "wrong", {"a": "model-00002-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"})
    with pytest.raises(FormatError, match="does not hold it"):
        open_source(d)
    (tmp_path / "escape").mkdir()
    d = _sharded(tmp_path / "escape", {"a": "../model-00001-of-00002.safetensors"})
    with pytest.raises(FormatError, match="not a relative path inside"):
        open_source(d)
    (tmp_path / "ambiguous").mkdir()
    for name in ("x.safetensors", "y.safetensors"):
        save_file({"w": torch.ones(1)}, tmp_path / "ambiguous" / name)
    with pytest.raises(FormatError, match="ambiguous"):
        open_source(tmp_path / "ambiguous")
    (tmp_path / "twice").mkdir()
    d = _sharded(tmp_path / "twice", {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"})
    save_file({"a": torch.ones(2), "b": torch.ones(1)}, d / "model-00001-of-00002.safetensors")
    with pytest.raises(FormatError, match="also in"):
        open_source(d)


# -- openckpt checkpoints ------------------------------------------------------------------------------------------


def test_checkpoint_source_entries(tmp_path: Path) -> None:
    model = _model()
    manifest = openckpt.save(tmp_path / "ck", {"model": model, "extra": {"t": torch.arange(3)}})
    with open_source(tmp_path / "ck") as source:
        assert set(source.tensors) == set(manifest.tensors)
        assert source.tensors["model/0.weight"].blake3 == manifest.tensors["model/0.weight"].blake3
        assert torch.equal(source.read("extra/t"), torch.arange(3))
    with open_source(tmp_path / "ck", entry="model") as source:
        assert set(source.tensors) == set(model.state_dict())
        assert torch.equal(source.read("1.bias"), model[1].bias)
    with pytest.raises(ManifestError, match="no entry 'optimizer'"):
        open_source(tmp_path / "ck", entry="optimizer")


def _distributed(tmp_path: Path, chunks: list[dict[str, object]]) -> Path:
    """A hand-built checkpoint in the layout of several ranks: tensor 'model/w' split across two files."""
    d = tmp_path / "dist"
    (d / "dcp").mkdir(parents=True)
    w = torch.arange(12.0).reshape(4, 3)
    files = {}
    for i, part in enumerate((w[:2], w[2:])):
        written = write_tensors(d / "dcp" / f"shard-{i}.safetensors", {"model/w": part.clone()})
        files[f"dcp/shard-{i}.safetensors"] = FileRecord.of(written.digest)
    layout = {"model/w": {"dtype": "F32", "shape": [4, 3], "chunks": chunks}}
    manifest = Manifest(
        id="x",
        created_at="now",
        entries={"model": EntryRecord(kind="module", files=sorted(files))},
        files=files,
        distributed={"world_size": 2, "tensors": layout, "local_entries": ["rng"]},
    )
    write_manifest(d, manifest)
    return d


def test_distributed_layout_is_reassembled(tmp_path: Path) -> None:
    chunks = [
        {"file": "dcp/shard-0.safetensors", "offsets": [0, 0], "shape": [2, 3]},
        {"file": "dcp/shard-1.safetensors", "offsets": [2, 0], "shape": [2, 3]},
    ]
    with open_source(_distributed(tmp_path, chunks), entry="model") as source:
        assert source.tensors["w"] == TensorEntry("w", "F32", (4, 3))
        assert torch.equal(source.read("w"), torch.arange(12.0).reshape(4, 3))
        assert any("rank-local" in n for n in source.notes)


def test_distributed_layout_errors(tmp_path: Path) -> None:
    chunks = [{"file": "dcp/shard-0.safetensors", "offsets": [0, 0], "shape": [2, 3]}]
    with pytest.raises(ManifestError, match="do not cover"):
        open_source(_distributed(tmp_path / "a", chunks))
    chunks = [
        {"file": "dcp/shard-0.safetensors", "offsets": [0, 0], "shape": [3, 3]},
        {"file": "dcp/shard-1.safetensors", "offsets": [3, 0], "shape": [1, 3]},
    ]
    with open_source(_distributed(tmp_path / "b", chunks)) as source, pytest.raises(IntegrityError):
        source.read("model/w")


def test_architecture_of_counts_float_tensors() -> None:
    entries = [
        TensorEntry("enc.w", "F32", (2, 3)),
        TensorEntry("enc.b", "BF16", (3,)),
        TensorEntry("head.steps", "I64", (1,)),
    ]
    arch = architecture_of(entries, {"model_type": "toy"})
    assert arch.parameters == 9
    assert arch.parameters_by_dtype == {"float32": 6, "bfloat16": 3}
    assert arch.parameters_by_module == {"enc": 9}
    assert arch.config == {"model_type": "toy"}
