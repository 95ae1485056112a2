"""numpy ``.npz`` archives, read with ``allow_pickle=False``: object arrays are refused."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsafeFileError, UnsupportedStateError
from openckpt.format.readers.base import TensorEntry, TensorSource

if TYPE_CHECKING:
    import torch

__all__ = ["NpzSource"]

_DTYPES = {
    "f8": "F64",
    "f4": "F32",
    "f2": "F16",
    "i8": "I64",
    "i4": "I32",
    "i2": "I16",
    "i1": "I8",
    "u8": "U64",
    "u4": "U32",
    "u2": "U16",
    "u1": "U8",
    "b1": "BOOL",
}


class NpzSource(TensorSource):
    """An ``.npz`` archive; arrays are listed at open and read again one at a time (bounded memory)."""

    kind = "npz"

    def __init__(self, path: Path) -> None:
        import numpy as np

        super().__init__(path)
        try:
            self._npz: Any = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise FormatError(f"not a readable .npz archive: {e}", path=path) from e
        for name in self._npz.files:
            array = self._array(name)
            dtype = _DTYPES.get(f"{array.dtype.kind}{array.dtype.itemsize}")
            if dtype is None:
                raise UnsupportedStateError(
                    f"array {name!r} has dtype {array.dtype}, which safetensors cannot store", path=path
                )
            self.tensors[name] = TensorEntry(name, dtype, tuple(array.shape))

    def _array(self, name: str) -> Any:
        try:
            array = self._npz[name]
        except ValueError as e:
            if "allow_pickle" in str(e):
                message = f"refusing to load array {name!r}: it is an object array, which needs unpickling"
                raise UnsafeFileError(message, path=self.path) from e
            raise FormatError(f"array {name!r} is unreadable: {e}", path=self.path) from e
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise FormatError(f"array {name!r} is unreadable: {e}", path=self.path) from e
        # not np.ascontiguousarray: it turns 0-d arrays into shape (1,)
        return array.astype(array.dtype.newbyteorder("="), order="C", copy=False)

    def read(self, name: str) -> torch.Tensor:
        import torch

        if name not in self.tensors:
            raise KeyError(name)
        return torch.from_numpy(self._array(name))

    def close(self) -> None:
        self._npz.close()
