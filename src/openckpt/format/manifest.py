"""The manifest ``openckpt.json``: what a checkpoint holds, where it came from, and every file's digests.

The schema is versioned (``format_version``); docs/format.md describes it field by field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openckpt.digest import FileDigest
from openckpt.errors import ManifestError
from openckpt.fsutil import atomic_write

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "Architecture",
    "Dataset",
    "EntryRecord",
    "FileRecord",
    "Lineage",
    "Manifest",
    "Recipe",
    "RecipeData",
    "TensorRecord",
    "Training",
    "read_manifest",
    "write_manifest",
]

FORMAT_VERSION = "1.2"
MANIFEST_NAME = "openckpt.json"
Relation = Literal["finetune", "adapter", "merge", "quantized"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="strings")  # minor versions may add fields


class FileRecord(_Model):
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """Absent only until the checkpoint is sealed (format 1.1): training saves add it just after the commit."""
    blake3: str = Field(pattern=r"^[0-9a-f]{64}$")

    @classmethod
    def of(cls, digest: FileDigest) -> FileRecord:
        return cls(size=digest.size, sha256=digest.sha256, blake3=digest.blake3)

    def digest(self) -> FileDigest:
        return FileDigest(self.size, self.sha256, self.blake3)


class TensorRecord(_Model):
    file: str
    dtype: str
    shape: list[int]
    blake3: str


class EntryRecord(_Model):
    """One named entry of the saved state (``model``, ``optimizer``, ``rng`` ...)."""

    kind: str
    files: list[str] = []
    aliases: dict[str, str] = {}
    """Tensor names that share storage with another name in the same entry (tied weights): alias → stored name."""


class Dataset(_Model):
    name: str
    revision: str | None = None
    digest: str | None = None


class Architecture(_Model):
    class_path: str | None = None
    """Informational only: the class is never imported from this string."""
    config: dict[str, Any] | None = None
    parameters: int = 0
    trainable_parameters: int = 0
    parameters_by_dtype: dict[str, int] = {}
    parameters_by_module: dict[str, int] = {}
    modules: dict[str, str] = {}
    """Top-level submodule name → class name."""


class Training(_Model):
    step: int | None = None
    epoch: int | None = None
    samples_seen: int | None = None
    tokens_seen: int | None = None
    metrics: dict[str, float] = {}
    datasets: list[Dataset] = []
    seed: int | None = None
    hyperparameters: dict[str, Any] = {}
    git_commit: str | None = None
    git_dirty: bool | None = None


class Lineage(_Model):
    parent: str | None = None
    """Id of the checkpoint this one resumed from (the resume chain)."""
    base_model: str | list[str] | None = None
    base_model_revision: str | None = None
    relation: Relation | None = None
    license: str | None = None


class RecipeData(_Model):
    """Digests of data a run actually read: a file by sha256, or a loader's samples (and their order) by blake3."""

    name: str
    sha256: str | None = None
    indices_blake3: str | None = None
    """Chained blake3 of the sample indices, batch by batch, in the order they were trained on."""
    samples_blake3: str | None = None
    """Chained blake3 of the bytes of each batch's tensors, in order (when the loader digests samples)."""
    batches: int | None = None


class Recipe(_Model):
    """What a person needs to run the training again (format 1.2; absent in checkpoints of earlier versions)."""

    command: list[str] = []
    """``sys.argv`` of the training process (for ``openckpt finetune``: its arguments after the program name)."""
    entry_point: str | None = None
    """The ``__main__`` module (``-m`` name) or script path; ``openckpt finetune`` for a CLI fine-tune."""
    cwd: str | None = None
    config: dict[str, Any] = {}
    """The resolved configuration the caller passed (hyperparameters and settings)."""
    python: str | None = None
    platform: str | None = None
    packages_sha256: str | None = None
    """sha256 of the lock-like list of installed distributions (``name==version`` lines, sorted)."""
    packages_file: str | None = None
    """Where that list is, relative to the directory holding this manifest."""
    torch: dict[str, Any] = {}
    """version, git_version, cuda, cudnn, driver, device (cpu, cuda, mps) and device names."""
    determinism: dict[str, Any] = {}
    seeds: dict[str, int] = {}
    git_commit: str | None = None
    git_diff_sha256: str | None = None
    """sha256 of ``git diff HEAD`` when the work tree had uncommitted changes."""
    data: list[RecipeData] = []
    checkpoints: dict[str, dict[str, Any]] = {}
    """Step → ``loss`` and ``tensors`` (name → blake3) of each checkpoint the run saved (``openckpt finetune``)."""


class Manifest(_Model):
    format: Literal["openckpt"] = "openckpt"
    format_version: str = FORMAT_VERSION
    id: str
    created_at: str
    software: dict[str, str] = {}
    architecture: Architecture | None = None
    training: Training = Training()
    lineage: Lineage = Lineage()
    entries: dict[str, EntryRecord] = {}
    files: dict[str, FileRecord] = {}
    tensors: dict[str, TensorRecord] = {}
    """Key: ``"<entry>/<tensor name>"``."""
    distributed: dict[str, Any] | None = None
    """Present when saved from several ranks: world size and the per-rank layout."""
    recipe: Recipe | None = None
    """How to run the training again (format 1.2): command, configuration, environment, data digests."""


def read_manifest(directory: Path) -> Manifest:
    """Read and validate ``directory/openckpt.json``."""
    path = directory / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError("no openckpt.json: not a checkpoint, or an incomplete one", path=path) from None
    except OSError as e:
        raise ManifestError(f"cannot read: {e}", path=path) from e
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"not valid JSON: {e}", path=path) from e
    if not isinstance(data, dict):
        raise ManifestError("not a JSON object", path=path)
    major = str(data.get("format_version", "")).split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise ManifestError(
            f"format version {data.get('format_version')!r} is not supported (this openckpt reads {FORMAT_VERSION})",
            path=path,
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        raise ManifestError(f"invalid manifest: {e}", path=path) from e


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write the manifest atomically and durably."""
    data = manifest.model_dump_json(indent=2, exclude_none=True).encode() + b"\n"
    atomic_write(directory / MANIFEST_NAME, data)
