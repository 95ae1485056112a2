"""PyTorch ``.pt``/``.bin``/``.ckpt`` files, read only through ``torch.load(weights_only=True)``.

Never falls back to full unpickling: whatever the weights-only loader refuses raises :class:`UnsafeFileError`.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsafeFileError, UnsupportedStateError
from openckpt.format.dtypes import dtype_name
from openckpt.format.readers.base import TensorEntry, TensorSource
from openckpt.format.readers.nested import split_nested

if TYPE_CHECKING:
    import torch

__all__ = ["TorchSource", "load_weights_only"]


def _reason(error: BaseException) -> str:
    """The useful sentence of torch's long weights-only error message."""
    text = str(error)
    _, found, after = text.partition("WeightsUnpickler error:")
    reason = " ".join((after if found else text).split())
    reason = reason.split(". Please", 1)[0].split(" Check the documentation", 1)[0]
    return reason.rstrip(".") or "no reason given"


def load_weights_only(path: Path, *, mmap: bool) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with torch's errors turned into openckpt's."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UnsafeFileError(
            f"refusing to load: torch's weights-only loader rejected it ({_reason(e)}); "
            "openckpt never unpickles arbitrary objects",
            path=path,
        ) from e
    except RuntimeError as e:
        if "TorchScript" in str(e):
            message = "refusing to load a TorchScript archive: loading it runs its code"
            raise UnsafeFileError(message, path=path) from e
        raise FormatError(f"not a readable torch file: {_reason(e)}", path=path) from e
    except Exception as e:
        raise FormatError(f"not a readable torch file: {type(e).__name__}: {_reason(e)}", path=path) from e


class TorchSource(TensorSource):
    """A torch-saved object, flattened to tensors with dotted names (see :mod:`.nested`)."""

    kind = "torch"

    def __init__(self, path: Path, *, zipped: bool) -> None:
        import torch

        super().__init__(path)
        split = split_nested(load_weights_only(path, mmap=zipped), root_name=path.stem)
        self.values, self.notes = split.values, split.notes
        self._tensors: dict[str, torch.Tensor] = {}
        for name, t in split.tensors.items():
            if t.layout != torch.strided or t.is_quantized:
                message = f"tensor {name!r} is sparse or quantized; only dense tensors are supported"
                raise UnsupportedStateError(message, path=path)
            try:
                dtype = dtype_name(t.dtype)
            except UnsupportedStateError:
                raise UnsupportedStateError(
                    f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot store", path=path
                ) from None
            self._tensors[name] = t.detach()
            self.tensors[name] = TensorEntry(name, dtype, tuple(t.shape))

    def read(self, name: str) -> torch.Tensor:
        return self._tensors[name].contiguous()

    def close(self) -> None:
        self._tensors.clear()
