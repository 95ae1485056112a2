from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from openckpt.checkpoint.tree import flatten, unflatten
from openckpt.errors import UnsupportedStateError


def roundtrip(obj: object) -> object:
    skeleton, tensors, _ = flatten(obj)
    return unflatten(json.loads(json.dumps(skeleton)), tensors)


def test_python_types_round_trip_exactly() -> None:
    obj = {
        "ints": [1, -(2**70), True, None],
        "floats": (0.1, 1e-310, float("inf"), float("-inf")),
        3: {"$not-a-tag": b"\x00\xff"},
        "np": [np.float32(1.5), np.int64(7)],
        "nested": {"a/b": {"~c": [()]}},
    }
    back = roundtrip(obj)
    assert back == obj
    assert type(back["np"][0]) is np.float32  # type: ignore[index]
    assert isinstance(back["floats"], tuple)  # type: ignore[index]
    assert math.isnan(roundtrip({"x": float("nan")})["x"])  # type: ignore[index]


def test_tensors_and_arrays_become_paths() -> None:
    t, a = torch.arange(3), np.arange(4, dtype=np.uint32)
    skeleton, tensors, arrays = flatten({"w": t, "a/b": [a]})
    assert set(tensors) == {"w", "a~1b/0"} and arrays == {"a~1b/0"}
    back = unflatten(skeleton, tensors)
    assert torch.equal(back["w"], t)
    assert isinstance(back["a/b"][0], np.ndarray) and back["a/b"][0].dtype == np.uint32


@pytest.mark.parametrize("bad", [object(), {"f": print}, np.array(["s"]), {1j}])
def test_unsupported_values_name_their_path(bad: object) -> None:
    with pytest.raises(UnsupportedStateError, match="cannot be stored"):
        flatten({"x": bad})


def test_zero_dim_and_big_endian_arrays_round_trip() -> None:
    obj = {"scalar": np.array(3.0), "be": np.arange(3, dtype=">i4")}
    back = roundtrip(obj)
    assert back["scalar"].shape == () and float(back["scalar"]) == 3.0  # type: ignore[index]
    assert back["be"].tolist() == [0, 1, 2]  # type: ignore[index]
