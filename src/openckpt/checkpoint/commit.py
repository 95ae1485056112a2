"""The commit protocol: a checkpoint directory appears complete or not at all.

temp dir → every file written and fsync'd → manifest last, fsync'd → fsync temp dir → rename to the final name →
fsync the parent. A reader that sees the final name therefore sees every byte the manifest lists.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from openckpt.checkpoint.describe import git_state, software_versions
from openckpt.checkpoint.distributed import is_distributed, save_distributed
from openckpt.checkpoint.seal import seal_in_background
from openckpt.checkpoint.snapshot import (
    DEFAULT_MAX_SHARD_SIZE,
    Snapshot,
    capture,
    training_from,
    write_snapshot,
)
from openckpt.errors import CheckpointExistsError
from openckpt.format.manifest import Lineage, Manifest, Recipe, Training, write_manifest
from openckpt.fsutil import staged_directory

__all__ = ["Sha256Mode", "commit_snapshot", "save"]

Sha256Mode = Literal["background", "inline"]
"""When tensor files' sha256 is computed: by the sealing thread after the commit, or while writing."""


def commit_snapshot(
    snapshot: Snapshot,
    path: Path,
    *,
    training: Training | Mapping[str, Any] | None = None,
    lineage: Lineage | Mapping[str, Any] | None = None,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    sha256: Sha256Mode = "background",
    recipe: Recipe | None = None,
) -> Manifest:
    """Write ``snapshot`` and atomically make it visible at ``path``; see :mod:`openckpt.checkpoint.seal`."""
    if path.exists() and not overwrite:
        raise CheckpointExistsError("a checkpoint already exists here", path=path)
    inline = sha256 == "inline"
    with staged_directory(path) as tmp:
        entries, files, tensors = write_snapshot(snapshot, tmp, max_shard_size=max_shard_size, sha256=inline)
        train = training_from(snapshot, training)
        if train.git_commit is None:
            commit, dirty = git_state()
            train = train.model_copy(update={"git_commit": commit, "git_dirty": dirty})
        manifest = Manifest(
            id=uuid.uuid4().hex,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            software=software_versions(),
            architecture=snapshot.architecture,
            training=train,
            lineage=lineage if isinstance(lineage, Lineage) else Lineage.model_validate(dict(lineage or {})),
            entries=entries,
            files=files,
            tensors=tensors,
            recipe=recipe,
        )
        write_manifest(tmp, manifest)  # last: fsyncs the manifest and the temp dir
    if not inline:
        seal_in_background(path)
    return manifest


def save(
    path: str | os.PathLike[str],
    state: Mapping[str, Any],
    *,
    training: Training | Mapping[str, Any] | None = None,
    lineage: Lineage | Mapping[str, Any] | None = None,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    sha256: Sha256Mode = "background",
) -> Manifest:
    """Save ``state`` (names → Stateful objects) as a checkpoint directory at ``path``, durably and atomically.

    ``training`` and ``lineage`` fill the manifest (step, metrics, datasets...; parent, base model, license).
    Returns the manifest that was committed. With ``sha256="background"`` (the default) the tensor files' sha256s
    are added to the manifest on disk just after this returns (:func:`openckpt.seal` waits for them);
    ``"inline"`` computes them while writing, which costs one core's sha256 rate on the critical path.
    In a torch.distributed run of several ranks this is collective: see :mod:`openckpt.checkpoint.distributed`.
    """
    if is_distributed():
        return save_distributed(
            Path(path), state, training=training, lineage=lineage, max_shard_size=max_shard_size, overwrite=overwrite
        )
    return commit_snapshot(
        capture(state),
        Path(path),
        training=training,
        lineage=lineage,
        max_shard_size=max_shard_size,
        overwrite=overwrite,
        sha256=sha256,
    )
