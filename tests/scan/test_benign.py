"""Zero false positives on real files made here: torch (zip and legacy), transformers, numpy, sklearn, HDF5."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from openckpt.scan.api import scan, scan_file
from openckpt.scan.verdict import FileResult, Severity


def _assert_clean(result: FileResult) -> None:
    blocking = [f for f in result.findings if f.severity > Severity.INFO or f.inconclusive]
    assert result.clean and not blocking, f"{result.path} ({result.format}): {[f.reason for f in blocking]}"


def _training_state() -> dict[str, object]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": 3,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "generator": np.random.default_rng(0),
        "array": np.arange(3),
        "bf16": torch.ones(2, dtype=torch.bfloat16),
        "param": torch.nn.Parameter(torch.ones(2)),
        "misc": [1 + 2j, {1, 2}, bytearray(b"x"), torch.device("cpu"), torch.float16, torch.Size([1, 2])],
    }


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_save(tmp_path: Path, zipped: bool) -> None:
    path = tmp_path / "state.pt"
    torch.save(_training_state(), path, _use_new_zipfile_serialization=zipped)
    result = scan_file(path)
    assert result.format == ("torch-zip" if zipped else "torch-legacy")
    _assert_clean(result)


def test_torch_full_module(tmp_path: Path) -> None:
    """A pickled nn.Module is data torch's own classes rebuild; weights_only refusal is only a note."""
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), path)
    result = scan_file(path)
    _assert_clean(result)
    assert any(f.rule == "pickle-not-weights-only" for f in result.findings)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_transformers_save_pretrained(tmp_path: Path, zipped: bool) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, vocab_size=50
    )
    model = transformers.BertModel(config)
    model.save_pretrained(tmp_path / "hf", safe_serialization=False)
    torch.save(model.state_dict(), tmp_path / "hf" / "pytorch_model.bin", _use_new_zipfile_serialization=zipped)
    report = scan(tmp_path / "hf")
    assert {r.format for r in report.results} >= {"text", "torch-zip" if zipped else "torch-legacy"}
    for result in report.results:
        _assert_clean(result)


def _arrays() -> dict[str, object]:
    return {
        "f32": np.arange(10, dtype=np.float32),
        "i8": np.zeros((2, 3), dtype=np.int8),
        "object": np.array([1, "x", None], dtype=object),
        "str": np.array(["ab", "c"]),
        "record": np.array([(1, 2.0)], dtype=[("x", "i4"), ("y", "f8")]),
        "scalar": np.float64(3.0),
        "dtype": np.dtype("f4"),
        "masked": np.ma.masked_array([1, 2], mask=[0, 1]),
    }


@pytest.mark.parametrize("protocol", range(6))
def test_numpy_pickles(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps(_arrays(), protocol=protocol))
    _assert_clean(scan_file(path))


def test_numpy_files(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, [1, 2]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "f.npy", np.ones((3, 3)))
    np.savez(tmp_path / "a.npz", x=np.ones(3), o=np.array([1, None], dtype=object))
    np.savez_compressed(tmp_path / "c.npz", x=np.zeros(100_000), o=np.array(["x"], dtype=object))
    report = scan(tmp_path)
    assert sorted(r.format for r in report.results) == ["npy", "npy", "npz", "npz"]
    for result in report.results:
        _assert_clean(result)


def _estimators() -> dict[str, object]:
    sklearn = pytest.importorskip("sklearn")
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC

    assert sklearn
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] > 0).astype(int)
    return {
        "lr": LogisticRegression().fit(x, y),
        "rf": RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
        "gb": GradientBoostingClassifier(n_estimators=3).fit(x, y),
        "hgb": HistGradientBoostingClassifier(max_iter=3).fit(x, y),
        "pipe": Pipeline([("scale", StandardScaler()), ("svc", SVC())]).fit(x, y),
        "kmeans": KMeans(2, n_init=1, random_state=0).fit(x),
        "pca": PCA(2).fit(x),
        "onehot": OneHotEncoder().fit(np.array([["a"], ["b"]])),
    }


@pytest.mark.parametrize("compress", [0, 3, "gzip", "bz2", "xz"])
def test_sklearn_joblib(tmp_path: Path, compress: object) -> None:
    joblib = pytest.importorskip("joblib")
    for name, estimator in _estimators().items():
        path = tmp_path / f"{name}.joblib"
        joblib.dump(estimator, path, compress=(compress, 3) if isinstance(compress, str) else compress)
        result = scan_file(path)
        assert "joblib" in result.format, result.format
        _assert_clean(result)


def test_sklearn_pickle(tmp_path: Path) -> None:
    for name, estimator in _estimators().items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(estimator))
        _assert_clean(scan_file(path))


def test_hdf5_without_keras(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("weights/dense", data=np.ones((4, 4)))
        f["weights"].attrs["note"] = "plain data"
        f["alias"] = h5py.SoftLink("/weights/dense")
    result = scan_file(path)
    assert result.format == "hdf5"
    _assert_clean(result)


def test_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"a": torch.ones(3), "b": torch.zeros(2, 2, dtype=torch.bfloat16)}, tmp_path / "m.safetensors")
    save_file({}, tmp_path / "empty.safetensors", metadata={"format": "pt"})
    for result in scan(tmp_path).results:
        assert result.format == "safetensors"
        _assert_clean(result)
