"""Every public exception of openckpt.

::

    OpenckptError
    ├── FormatError (ValueError)               a file is not what the format says it must be
    │   └── ManifestError                      openckpt.json missing fields, malformed, wrong version
    ├── IntegrityError                         bytes on disk differ from their recorded digest or size
    ├── StateMismatchError (ValueError)        checkpoint and target disagree (keys, shapes, dtypes)
    ├── UnsupportedStateError (TypeError)      a state value openckpt cannot store without pickle
    ├── UnsafeFileError                        refusing to load a file that needs unpickling
    ├── CheckpointNotFoundError (FileNotFoundError)
    ├── CheckpointExistsError (FileExistsError)
    ├── NoValidCheckpointError                 checkpoints exist but none of them loads
    └── AsyncSaveError                         a background save failed; raised on the next call

Errors about a file carry it in ``.path`` and name it in the message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AsyncSaveError",
    "CheckpointExistsError",
    "CheckpointNotFoundError",
    "FormatError",
    "IntegrityError",
    "ManifestError",
    "NoValidCheckpointError",
    "OpenckptError",
    "StateMismatchError",
    "UnsafeFileError",
    "UnsupportedStateError",
]


class OpenckptError(Exception):
    """Root of every openckpt error. ``path`` is the file or directory concerned, if any."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class FormatError(OpenckptError, ValueError):
    """A file does not follow the format it claims (safetensors header, JSON, layout)."""


class ManifestError(FormatError):
    """``openckpt.json`` is missing, malformed, or of an unsupported version."""


class IntegrityError(OpenckptError):
    """A file's bytes differ from the size or digest recorded in the manifest."""


class StateMismatchError(OpenckptError, ValueError):
    """The checkpoint does not fit the target state (missing keys, shape or dtype differences)."""


class UnsupportedStateError(OpenckptError, TypeError):
    """A state value has a type that cannot be stored as tensors + JSON."""


class UnsafeFileError(OpenckptError):
    """Loading the file would require unpickling arbitrary objects; openckpt refuses."""


class CheckpointNotFoundError(OpenckptError, FileNotFoundError):
    """No checkpoint at the given path."""


class CheckpointExistsError(OpenckptError, FileExistsError):
    """A checkpoint already exists where a new one was to be committed."""


class NoValidCheckpointError(OpenckptError):
    """Checkpoints exist, but every one of them failed to load; resuming from scratch would be silent data loss."""


class AsyncSaveError(OpenckptError):
    """A background save failed. The original exception is ``__cause__``."""
