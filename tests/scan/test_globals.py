"""Alias canonicalisation, the per-loader allowlist, and gadget severities."""

from __future__ import annotations

import pytest

from openckpt.scan.pickle.globals import canonical, classify, weights_only
from openckpt.scan.verdict import Severity


@pytest.mark.parametrize(
    ("raw", "real"),
    [
        (("__builtin__", "eval"), ("builtins", "eval")),
        (("posix", "system"), ("os", "system")),
        (("nt", "system"), ("os", "system")),
        (("_operator", "attrgetter"), ("operator", "attrgetter")),
        (("_pickle", "loads"), ("pickle", "loads")),
        (("cPickle", "loads"), ("pickle", "loads")),
        (("_io", "FileIO"), ("io", "FileIO")),
        (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")),
        (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")),
        (("collections", "OrderedDict"), ("collections", "OrderedDict")),
    ],
)
def test_canonical(raw: tuple[str, str], real: tuple[str, str]) -> None:
    assert canonical(*raw) == real


@pytest.mark.parametrize(
    ("module", "name", "loader"),
    [
        ("torch._utils", "_rebuild_tensor_v2", "torch"),
        ("collections", "OrderedDict", "torch"),
        ("torch", "FloatStorage", "torch"),
        ("numpy._core.multiarray", "_reconstruct", "numpy"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper", "joblib"),
        ("sklearn.linear_model._logistic", "LogisticRegression", "joblib"),
        ("_codecs", "encode", "pickle"),
    ],
)
def test_allowed(module: str, name: str, loader: str) -> None:
    assert classify(module, name, loader) is None


def test_allowlist_is_per_loader() -> None:
    decision = classify("sklearn.linear_model._logistic", "LogisticRegression", "torch")
    assert decision is not None and decision[0] is Severity.NEEDS_CODE
    assert weights_only("torch._utils", "_rebuild_tensor_v2")
    assert not weights_only("numpy._core.multiarray", "_reconstruct")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("builtins", "getattr"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.serialization", "load"),
        ("pathlib", "os.system"),
        ("torch", "_utils.__builtins__"),
        ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
        ("numpy.testing._private.utils", "runstring"),
        ("somepkg", "run"),
    ],
)
def test_gadgets_are_malicious(module: str, name: str) -> None:
    decision = classify(module, name, "pickle")
    assert decision is not None and decision[0] is Severity.MALICIOUS, decision


def test_unknown_needs_code() -> None:
    decision = classify("mylib.layers", "Attention", "pickle")
    assert decision is not None and decision[0] is Severity.NEEDS_CODE
