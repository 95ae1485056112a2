"""openckpt: exact, crash-safe, pickle-free AI checkpoints.

Submodules load on first use, so ``import openckpt`` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from openckpt.errors import (
    AsyncSaveError,
    CheckpointExistsError,
    CheckpointNotFoundError,
    FormatError,
    IntegrityError,
    ManifestError,
    MirrorError,
    NoValidCheckpointError,
    OpenckptError,
    SignatureError,
    StateMismatchError,
    UnsafeFileError,
    UnsupportedStateError,
)

if TYPE_CHECKING:
    from openckpt.checkpoint.commit import save
    from openckpt.checkpoint.dataloader import ResumableLoader
    from openckpt.checkpoint.export import export
    from openckpt.checkpoint.manager import CheckpointManager
    from openckpt.checkpoint.restore import load
    from openckpt.checkpoint.retention import keep_best, keep_every, keep_last
    from openckpt.checkpoint.seal import seal
    from openckpt.checkpoint.stateful import RNGState, Stateful, TrainingProgress
    from openckpt.format.manifest import Manifest, read_manifest
    from openckpt.scan.api import scan
    from openckpt.signing import sign, verify_signature

__version__ = "0.1.0"

_LAZY = {
    "save": "openckpt.checkpoint.commit",
    "load": "openckpt.checkpoint.restore",
    "export": "openckpt.checkpoint.export",
    "CheckpointManager": "openckpt.checkpoint.manager",
    "keep_last": "openckpt.checkpoint.retention",
    "keep_best": "openckpt.checkpoint.retention",
    "keep_every": "openckpt.checkpoint.retention",
    "seal": "openckpt.checkpoint.seal",
    "ResumableLoader": "openckpt.checkpoint.dataloader",
    "RNGState": "openckpt.checkpoint.stateful",
    "Stateful": "openckpt.checkpoint.stateful",
    "TrainingProgress": "openckpt.checkpoint.stateful",
    "Manifest": "openckpt.format.manifest",
    "read_manifest": "openckpt.format.manifest",
    "scan": "openckpt.scan.api",
    "sign": "openckpt.signing",
    "verify_signature": "openckpt.signing",
}

__all__ = [
    "AsyncSaveError",
    "CheckpointExistsError",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "FormatError",
    "IntegrityError",
    "Manifest",
    "ManifestError",
    "MirrorError",
    "NoValidCheckpointError",
    "OpenckptError",
    "RNGState",
    "ResumableLoader",
    "SignatureError",
    "StateMismatchError",
    "Stateful",
    "TrainingProgress",
    "UnsafeFileError",
    "UnsupportedStateError",
    "__version__",
    "export",
    "keep_best",
    "keep_every",
    "keep_last",
    "load",
    "read_manifest",
    "save",
    "scan",
    "seal",
    "sign",
    "verify_signature",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openckpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
