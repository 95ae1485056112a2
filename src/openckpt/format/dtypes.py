"""safetensors dtype names ↔ torch dtypes."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from openckpt.errors import UnsupportedStateError

if TYPE_CHECKING:
    import torch

__all__ = ["ITEMSIZE", "dtype_name", "torch_dtype"]

ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}


@cache
def _table() -> dict[str, torch.dtype]:
    import torch

    return {
        "F64": torch.float64,
        "F32": torch.float32,
        "F16": torch.float16,
        "BF16": torch.bfloat16,
        "F8_E4M3": torch.float8_e4m3fn,
        "F8_E5M2": torch.float8_e5m2,
        "I64": torch.int64,
        "I32": torch.int32,
        "I16": torch.int16,
        "I8": torch.int8,
        "U64": torch.uint64,
        "U32": torch.uint32,
        "U16": torch.uint16,
        "U8": torch.uint8,
        "BOOL": torch.bool,
    }


@cache
def _names() -> dict[torch.dtype, str]:
    return {v: k for k, v in _table().items()}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _table()[name]
    except KeyError:
        raise UnsupportedStateError(f"unknown safetensors dtype {name!r}") from None


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return _names()[dtype]
    except KeyError:
        raise UnsupportedStateError(f"safetensors cannot store tensors of dtype {dtype}") from None
