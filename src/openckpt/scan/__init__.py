"""Security scanners for model files: nothing scanned is ever imported, unpickled or executed.

``api`` (``scan``), ``route`` (content sniffing), ``pickle/`` (the symbolic unpickler and allowlists),
``containers/`` (zip, tar, compression), ``formats/`` (torch, numpy, joblib, safetensors, GGUF, ONNX, Keras,
SavedModel), ``limits``, ``verdict`` (findings and merge rules), ``report`` (table, JSON, SARIF).

``openckpt.scan`` is both this package and the public function: once the package is imported, Python binds the
name ``openckpt.scan`` to it, so the package itself is callable and forwards to :func:`openckpt.scan.api.scan`.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openckpt.scan.verdict import ScanReport


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> ScanReport:
        from openckpt.scan.api import scan

        return scan(*args, **kwargs)


RULES_VERSION = "3"
"""The version of the scanner's rules and allowlists: bump it whenever a verdict could change, so that the hub
rescans every stored file."""

sys.modules[__name__].__class__ = _CallableModule
