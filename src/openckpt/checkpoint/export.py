"""Export a training checkpoint as a publishable inference checkpoint: weights only, Hugging Face layout, a card."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from openckpt.checkpoint.describe import software_versions
from openckpt.checkpoint.restore import read_entry_headers
from openckpt.checkpoint.snapshot import MODEL_ENTRY, write_json_file
from openckpt.digest import digest_bytes
from openckpt.errors import CheckpointExistsError, CheckpointNotFoundError, StateMismatchError
from openckpt.format.card import render_card
from openckpt.format.manifest import (
    EntryRecord,
    FileRecord,
    Manifest,
    Recipe,
    TensorRecord,
    read_manifest,
    write_manifest,
)
from openckpt.format.tensorfile import read_tensors, verify_blake3, write_tensors
from openckpt.fsutil import durable_write, staged_directory

if TYPE_CHECKING:
    import torch

__all__ = ["export"]


def export(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dtype: str | torch.dtype | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Write the ``model`` entry of ``checkpoint`` to ``out_dir`` as ``model.safetensors`` (sharded as saved),
    ``config.json``, ``README.md`` (card YAML from the manifest) and an ``openckpt.json`` whose lineage names the
    training checkpoint as parent and which keeps its recipe (the package list copied as ``openckpt-packages.txt``).
    ``dtype`` casts floating-point weights (e.g. ``"bfloat16"``).
    """
    src, dst = Path(checkpoint), Path(out_dir)
    if not src.is_dir():
        raise CheckpointNotFoundError("no checkpoint directory", path=src)
    if dst.exists() and not overwrite:
        raise CheckpointExistsError("output directory exists", path=dst)
    source = read_manifest(src)
    entry = _model_entry(src, source)
    cast = _float_dtype(dtype)

    with staged_directory(dst) as tmp:
        files: dict[str, FileRecord] = {}
        tensors = _write_weights(src, source, tmp, cast=cast, files=files)
        architecture = source.architecture
        if architecture and architecture.config is not None:
            config = dict(architecture.config)
            if cast is not None:
                config["torch_dtype"] = config["dtype"] = str(cast).removeprefix("torch.")
            write_json_file(tmp, "config.json", config, files)
            architecture = architecture.model_copy(update={"config": config})
        manifest = Manifest(
            id=uuid.uuid4().hex,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            software=software_versions(),
            architecture=architecture,
            recipe=_copy_packages(src, source.recipe, tmp, files),
            training=source.training,
            lineage=source.lineage.model_copy(update={"parent": source.id}),
            entries={MODEL_ENTRY: EntryRecord(kind="module", files=list(entry.files))},
            files=files,
            tensors=tensors,
        )
        card = render_card(manifest, name=name or _title(src, dst)).encode()
        durable_write(tmp / "README.md", card)
        manifest.files["README.md"] = FileRecord.of(digest_bytes(card))
        write_manifest(tmp, manifest)
    return manifest


def _model_entry(src: Path, source: Manifest) -> EntryRecord:
    """The ``model`` module entry of a single-process checkpoint."""
    if source.distributed is not None:
        raise StateMismatchError(
            "this checkpoint was saved by several ranks: load its model into one process with openckpt.load "
            "(it reshards) and save that, then export",
            path=src,
        )
    entry = source.entries.get(MODEL_ENTRY)
    if entry is None or entry.kind != "module":
        raise StateMismatchError("checkpoint has no 'model' module entry to export", path=src)
    return entry


def _float_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``dtype`` as a floating-point torch dtype (a name like ``"bfloat16"`` or a dtype), or None."""
    import torch

    cast = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if cast is not None and not (isinstance(cast, torch.dtype) and cast.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch dtype, not {dtype!r}")
    return cast


def _write_weights(
    src: Path, source: Manifest, tmp: Path, *, cast: torch.dtype | None, files: dict[str, FileRecord]
) -> dict[str, TensorRecord]:
    """Copy the verified ``model`` shards into ``tmp`` (cast if asked), with the index when sharded.

    Adds the written files to ``files``; returns the tensor records.
    """
    read_entry_headers(src, source, MODEL_ENTRY)  # every header matches the manifest
    shards = source.entries[MODEL_ENTRY].files
    tensors: dict[str, TensorRecord] = {}
    total = 0
    for fname in shards:
        verify_blake3(src / fname, source.files[fname].digest())
        weights = read_tensors(src / fname)
        if cast is not None:
            weights = {k: v.to(cast) if v.is_floating_point() else v for k, v in weights.items()}
        written = write_tensors(tmp / fname, weights, metadata={"format": "pt"})
        files[fname] = FileRecord.of(written.digest)
        total += sum(info.nbytes for info in written.tensors.values())
        for tname, info in written.tensors.items():
            tensors[f"{MODEL_ENTRY}/{tname}"] = TensorRecord(
                file=fname, dtype=info.dtype, shape=list(info.shape), blake3=written.tensor_blake3[tname]
            )
    if len(shards) > 1:
        weight_map = {k.split("/", 1)[1]: t.file for k, t in sorted(tensors.items())}
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        write_json_file(tmp, "model.safetensors.index.json", index, files)
    return tensors


def _copy_packages(src: Path, recipe: Recipe | None, tmp: Path, files: dict[str, FileRecord]) -> Recipe | None:
    """The recipe for the export: the run's package list travels with it as ``openckpt-packages.txt``."""
    if recipe is None or not recipe.packages_file or not (src / recipe.packages_file).is_file():
        return recipe
    packages = (src / recipe.packages_file).read_bytes()
    durable_write(tmp / "openckpt-packages.txt", packages)
    files["openckpt-packages.txt"] = FileRecord.of(digest_bytes(packages))
    return recipe.model_copy(update={"packages_file": "openckpt-packages.txt"})


def _title(src: Path, dst: Path) -> str:
    """The card's title when none is given: the run a ``step-N`` checkpoint belongs to, else the checkpoint's name."""
    run = src.resolve().parent if re.fullmatch(r"step-\d+", src.name) else src.resolve()
    return run.name or dst.name
