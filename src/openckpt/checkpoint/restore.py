"""Loading a checkpoint into live objects, all or nothing: one directory's (:mod:`openckpt.checkpoint.restore_local`)
or one saved by several ranks (:mod:`openckpt.checkpoint.distributed`).

Everything that can be checked is checked before the first target is touched: the manifest, every file's size and
blake3 (``verify=True``), every header against the manifest, and every tensor's name, shape and dtype against the
target. Only then are tensors read — straight into the existing parameters and optimizer state where they fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openckpt.checkpoint.restore_local import load_directory, read_entry_headers
from openckpt.errors import CheckpointNotFoundError
from openckpt.format.manifest import Manifest, read_manifest

__all__ = ["load", "read_entry_headers"]


def load(path: str | os.PathLike[str], state: Mapping[str, Any], *, verify: bool = True) -> Manifest:
    """Load the checkpoint at ``path`` into the objects of ``state``; return its manifest.

    Entries of the checkpoint that ``state`` does not name are ignored (load only the model for inference).
    Raises :class:`StateMismatchError`, :class:`IntegrityError` or :class:`FormatError` before mutating anything.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointNotFoundError("no checkpoint directory", path=directory)
    manifest = read_manifest(directory)
    if manifest.distributed is not None:  # saved by several ranks
        from openckpt.checkpoint.distributed import load_distributed

        return load_distributed(directory, manifest, state, verify=verify)
    return load_directory(directory, manifest, state, verify=verify)
