"""Capturing training state (optionally into reusable staging buffers) and writing it as checkpoint files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.checkpoint.describe import describe_module, hf_config
from openckpt.checkpoint.stateful import TrainingProgress, adapt
from openckpt.checkpoint.tree import flatten
from openckpt.digest import digest_bytes
from openckpt.errors import UnsupportedStateError
from openckpt.format.manifest import Architecture, EntryRecord, FileRecord, TensorRecord, Training
from openckpt.format.tensorfile import write_tensors
from openckpt.fsutil import durable_write, fsync_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "STATE_FILE",
    "EntrySnapshot",
    "Snapshot",
    "Staging",
    "capture",
    "training_from",
    "write_json_file",
    "write_snapshot",
]

DEFAULT_MAX_SHARD_SIZE = 5 * 10**9
STATE_FILE = "state.json"
MODEL_ENTRY = "model"


@dataclass
class EntrySnapshot:
    kind: str
    tensors: dict[str, torch.Tensor]
    skeleton: Any = None
    aliases: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] | None = None


@dataclass
class Snapshot:
    entries: dict[str, EntrySnapshot]
    architecture: Architecture | None = None
    progress: TrainingProgress | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for e in self.entries.values() for t in e.tensors.values())


class Staging:
    """CPU buffers reused from one async save to the next, so a snapshot costs one copy and no allocation."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def copy(self, prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        import torch

        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, t in tensors.items():
                key = f"{prefix}/{name}"
                buf = self._buffers.get(key)
                if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
                    buf = self._buffers[key] = torch.empty(t.shape, dtype=t.dtype, device="cpu")
                buf.copy_(t)
                out[name] = buf
        return out


def _dedupe_aliases(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keep the first name of tensors that are the same view of the same storage (tied weights)."""
    import torch

    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise UnsupportedStateError(f"module state {name!r} is a {type(t).__qualname__}, not a tensor")
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
        else:
            seen.setdefault(key, name)
            kept[name] = t
    return kept, aliases


def capture(state: Mapping[str, Any], *, staging: Staging | None = None) -> Snapshot:
    """Take the state of every entry; with ``staging``, tensors are copied so training may continue at once."""
    entries: dict[str, EntrySnapshot] = {}
    architecture: Architecture | None = None
    progress: TrainingProgress | None = None
    for key, (kind, obj) in adapt(state).items():
        if kind == "module":
            tensors, aliases = _dedupe_aliases(obj.state_dict())
            entry = EntrySnapshot(kind, tensors, aliases=aliases)
            if key == MODEL_ENTRY or architecture is None:
                architecture = describe_module(obj)
                entry.config = hf_config(obj) if key == MODEL_ENTRY else None
        else:
            skeleton, tensors, _ = flatten(obj.state_dict())
            entry = EntrySnapshot(kind, tensors, skeleton=skeleton)
            progress = obj if isinstance(obj, TrainingProgress) else progress
        if staging is not None:
            entry.tensors = staging.copy(key, entry.tensors)
        elif any(t.device.type != "cpu" for t in entry.tensors.values()):
            entry.tensors = {n: t.detach().to("cpu") for n, t in entry.tensors.items()}
        entries[key] = entry
    if progress is not None:
        progress = TrainingProgress(**progress.state_dict())
    return Snapshot(entries, architecture, progress)


def _shards(tensors: Mapping[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        t = tensors[name]
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > limit:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += n
    return shards


def write_json_file(directory: Path, name: str, obj: Any, files: dict[str, FileRecord]) -> None:
    """Write ``obj`` as JSON durably into ``directory`` and record its digests in ``files``."""
    data = json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n"
    durable_write(directory / name, data)
    files[name] = FileRecord.of(digest_bytes(data))


def write_snapshot(
    snapshot: Snapshot, directory: Path, *, max_shard_size: int = DEFAULT_MAX_SHARD_SIZE, sha256: bool = True
) -> tuple[dict[str, EntryRecord], dict[str, FileRecord], dict[str, TensorRecord]]:
    """Write every entry's tensors (Hugging Face layout, sharded above ``max_shard_size``) and JSON state, durably.

    Each tensor file's fsync runs on a helper thread while the next file is written. ``sha256=False`` leaves the
    tensor files' sha256 to :func:`openckpt.checkpoint.seal.seal` (JSON files always have theirs).
    """
    with ThreadPoolExecutor(1, thread_name_prefix="openckpt-fsync") as syncer:
        syncs: list[Future[None]] = []
        result = _write_entries(snapshot, directory, max_shard_size, sha256, syncer, syncs)
        for done in syncs:
            done.result()
    return result


def _write_entries(
    snapshot: Snapshot,
    directory: Path,
    max_shard_size: int,
    sha256: bool,
    syncer: ThreadPoolExecutor,
    syncs: list[Future[None]],
) -> tuple[dict[str, EntryRecord], dict[str, FileRecord], dict[str, TensorRecord]]:
    entries: dict[str, EntryRecord] = {}
    files: dict[str, FileRecord] = {}
    tensors: dict[str, TensorRecord] = {}
    skeletons: dict[str, Any] = {}
    for key, entry in snapshot.entries.items():
        record = EntryRecord(kind=entry.kind, aliases=entry.aliases)
        shards = _shards(entry.tensors, max_shard_size) if entry.tensors else []
        weight_map: dict[str, str] = {}
        for i, shard in enumerate(shards, 1):
            name = f"{key}.safetensors" if len(shards) == 1 else f"{key}-{i:05d}-of-{len(shards):05d}.safetensors"
            written = write_tensors(directory / name, shard, metadata={"format": "pt"}, sha256=sha256, fsync=False)
            syncs.append(syncer.submit(fsync_file, directory / name))
            files[name] = FileRecord.of(written.digest)
            record.files.append(name)
            for tname, info in written.tensors.items():
                weight_map[tname] = name
                tensors[f"{key}/{tname}"] = TensorRecord(
                    file=name, dtype=info.dtype, shape=list(info.shape), blake3=written.tensor_blake3[tname]
                )
        if len(shards) > 1:
            total = sum(t.numel() * t.element_size() for t in entry.tensors.values())
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            write_json_file(directory, f"{key}.safetensors.index.json", index, files)
        if entry.config is not None:
            write_json_file(directory, "config.json", entry.config, files)
        if entry.kind != "module":
            skeletons[key] = entry.skeleton
        entries[key] = record
    if skeletons:
        write_json_file(directory, STATE_FILE, skeletons, files)
    return entries, files, tensors


def training_from(snapshot: Snapshot, given: Training | Mapping[str, Any] | None) -> Training:
    """The manifest's training section: explicit values win over the captured :class:`TrainingProgress`."""
    training = given if isinstance(given, Training) else Training.model_validate(dict(given or {}))
    if snapshot.progress is not None:
        p = snapshot.progress
        update = {
            "step": p.step,
            "epoch": p.epoch,
            "samples_seen": p.samples_seen,
            "tokens_seen": p.tokens_seen,
        }
        training = training.model_copy(update={k: v for k, v in update.items() if getattr(training, k) is None})
    return training
