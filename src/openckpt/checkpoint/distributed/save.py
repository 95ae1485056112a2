"""The collective save and its commit protocol.

Every rank captures its state, then rank 0 names the temp dir (and the ranks check they save the same path). Every
rank writes into it: modules and optimizers through DCP, its local state as ``rank-<r>/``. The ranks agree that
every write succeeded; rank 0 writes the manifest last, fsyncs, renames the temp dir to its final name and runs
``on_commit`` (the manager's LATEST and retention) while the others wait for its answer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.checkpoint.describe import describe_module, git_state, software_versions
from openckpt.checkpoint.distributed.ranks import DCP_DIR, Globals, agree, param_fqns, rank_dir, split_state
from openckpt.checkpoint.snapshot import (
    DEFAULT_MAX_SHARD_SIZE,
    MODEL_ENTRY,
    STATE_FILE,
    Snapshot,
    capture,
    training_from,
    write_json_file,
    write_snapshot,
)
from openckpt.checkpoint.tree import flatten
from openckpt.digest import hash_file
from openckpt.errors import CheckpointExistsError, IntegrityError, StateMismatchError, UnsupportedStateError
from openckpt.format.dtypes import dtype_name
from openckpt.format.manifest import MANIFEST_NAME, EntryRecord, FileRecord, Lineage, Manifest, Training, write_manifest
from openckpt.format.tensorfile import read_header
from openckpt.fsutil import fsync_dir, remove_tree, temp_sibling

if TYPE_CHECKING:
    import torch

__all__ = ["save_distributed"]

WRITER = "torch.distributed.checkpoint.HuggingFaceStorageWriter"


def _optimizer_state(module: torch.nn.Module, optim: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state dict keyed by parameter name, without initialising an empty state.

    (``get_optimizer_state_dict`` initialises an empty state with a zero-lr step, which would change the optimizer
    being saved: a run checkpointed before its first step would then not resume exactly.)
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    if optim.state:
        return dict(get_optimizer_state_dict(module, optim))
    fqn = param_fqns(module)
    params = [p for group in optim.param_groups for p in group["params"]]
    groups = optim.state_dict()["param_groups"]
    return {"state": {}, "param_groups": [{**g, "params": [fqn[id(params[i])] for i in g["params"]]} for g in groups]}


def _global_tensors(glob: Globals) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """DCP's flat state dict (``"<entry>/<name>"`` → tensor) and the JSON skeletons of the optimizers."""
    import torch
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    flat: dict[str, torch.Tensor] = {}
    skeletons: dict[str, Any] = {}
    for key, (module, optim) in glob.items():
        if optim is None:
            for name, t in get_model_state_dict(module).items():
                if not isinstance(t, torch.Tensor):
                    raise UnsupportedStateError(f"module state {key}/{name} is a {type(t).__qualname__}")
                flat[f"{key}/{name}"] = t
        else:
            skeleton, tensors, _ = flatten(_optimizer_state(module, optim))
            skeletons[key] = skeleton
            flat.update({f"{key}/{path}": t for path, t in tensors.items()})
    return flat, skeletons


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _write_rank(snapshot: Snapshot, tmp: Path, rank: int, world: int, max_shard_size: int) -> dict[str, Any]:
    """Write this rank's local state as a nested checkpoint; describe it and the DCP files this rank hashes."""
    sub = tmp / rank_dir(rank)
    sub.mkdir()
    entries, files, tensors = write_snapshot(snapshot, sub, max_shard_size=max_shard_size)
    nested = Manifest(
        id=uuid.uuid4().hex,
        created_at=_now(),
        software=software_versions(),
        training=training_from(snapshot, None),
        entries=entries,
        files=files,
        tensors=tensors,
    )
    write_manifest(sub, nested)
    files[MANIFEST_NAME] = FileRecord.of(hash_file(sub / MANIFEST_NAME))
    report: dict[str, Any] = {
        "files": {f"{sub.name}/{n}": r.model_dump() for n, r in files.items()},
        "entries": {k: {"kind": e.kind, "files": [f"{sub.name}/{f}" for f in e.files]} for k, e in entries.items()},
        "chunks": {},
    }
    written = sorted(p.name for p in (tmp / DCP_DIR).iterdir()) if (tmp / DCP_DIR).is_dir() else []
    for name in written[rank::world]:  # the ranks share the hashing of DCP's files
        rel, path = f"{DCP_DIR}/{name}", tmp / DCP_DIR / name
        report["files"][rel] = FileRecord.of(hash_file(path)).model_dump()
        infos, meta = read_header(path)
        offsets = json.loads(meta.get("DCP_SHARDING_INFO", "{}"))
        report["chunks"][rel] = {
            n: {
                "offsets": offsets.get(n, {}).get("saved_offsets", [0] * len(info.shape)),
                "shape": list(info.shape),
                "dtype": info.dtype,
            }
            for n, info in infos.items()
        }
    return report


def _layout(flat: Mapping[str, torch.Tensor], reports: list[Any], tmp: Path) -> dict[str, dict[str, Any]]:
    """Global tensor name → dtype, global shape and the chunks (file, offsets, shape) that hold it."""
    layout: dict[str, dict[str, Any]] = {
        k: {"dtype": dtype_name(t.dtype), "shape": list(t.shape), "chunks": []} for k, t in sorted(flat.items())
    }
    for report in reports:
        for fname, chunks in report["chunks"].items():
            for name, chunk in chunks.items():
                rec = layout.get(name)
                if rec is None or chunk["dtype"] != rec["dtype"]:
                    raise IntegrityError(f"{fname} holds {name!r}, which was not saved as {chunk['dtype']}", path=tmp)
                rec["chunks"].append({"file": fname, "offsets": chunk["offsets"], "shape": chunk["shape"]})
    for name, rec in layout.items():
        if sum(math.prod(c["shape"]) for c in rec["chunks"]) != math.prod(rec["shape"]):
            raise IntegrityError(f"the chunks DCP wrote do not cover tensor {name!r}", path=tmp)
    return layout


def save_distributed(
    path: Path,
    state: Mapping[str, Any],
    *,
    training: Training | Mapping[str, Any] | None = None,
    lineage: Lineage | Mapping[str, Any] | None = None,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    on_commit: Callable[[Path], None] | None = None,
) -> Manifest:
    """Collective :func:`openckpt.save`: call on every rank with that rank's state; returns the manifest on all.

    ``on_commit(path)`` runs on rank 0 once the checkpoint is committed, before the other ranks return.
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

    rank, world = dist.get_rank(), dist.get_world_size()
    error: Exception | None = None
    proposal = None
    try:  # everything that can fail before the first collective, so no rank skips one
        captured = _capture(state)
        if rank == 0:
            if path.exists() and not overwrite:
                raise CheckpointExistsError("a checkpoint already exists here", path=path)
            path.parent.mkdir(parents=True, exist_ok=True)
            proposal = str(temp_sibling(path))
    except Exception as e:
        error = e
    proposals = agree(error, [str(path.resolve()), proposal])
    if len({p for p, _ in proposals}) > 1:
        raise StateMismatchError(f"the ranks save to different paths: {sorted({p for p, _ in proposals})}")
    tmp = Path(proposals[0][1])

    report = None
    try:
        dcp_save(captured.flat, storage_writer=HuggingFaceStorageWriter(str(tmp / DCP_DIR), save_distributed=True))
        report = _write_rank(captured.snapshot, tmp, rank, world, max_shard_size)
    except Exception as e:  # DCP raises on every rank alike
        error = e
    try:
        reports = agree(error, report)
    except Exception:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest_json = None
    if rank == 0:
        try:
            manifest = _commit(path, tmp, state, captured, reports, training=training, lineage=lineage)
            manifest_json = manifest.model_dump(mode="json")
            if on_commit is not None:
                on_commit(path)
        except Exception as e:
            error = e
            shutil.rmtree(tmp, ignore_errors=True)
    return Manifest.model_validate(agree(error, manifest_json)[0])


@dataclass(frozen=True)
class _Captured:
    """What one rank took from its state before writing: the DCP entries, their flat tensors and optimizer
    skeletons, and the snapshot of its rank-local entries."""

    glob: Globals
    flat: dict[str, torch.Tensor]
    skeletons: dict[str, Any]
    snapshot: Snapshot


def _capture(state: Mapping[str, Any]) -> _Captured:
    """Split ``state`` and capture both parts (no collective: a failure here is agreed on afterwards)."""
    glob, local = split_state(state)
    flat, skeletons = _global_tensors(glob)
    return _Captured(glob=glob, flat=flat, skeletons=skeletons, snapshot=capture(local))


def _entries(glob: Globals, layout: Mapping[str, Any], reports: list[Any]) -> dict[str, EntryRecord]:
    """Entry records: the DCP files holding each module and optimizer, then each rank's local entries."""
    entries: dict[str, EntryRecord] = {}
    for key, (_, optim) in glob.items():
        held = {c["file"] for name, rec in layout.items() if name.split("/", 1)[0] == key for c in rec["chunks"]}
        entries[key] = EntryRecord(kind="module" if optim is None else "optimizer", files=sorted(held))
    for report in reports:
        for key, rec in report["entries"].items():
            entries.setdefault(key, EntryRecord(kind=rec["kind"])).files.extend(rec["files"])
    return entries


def _training(snapshot: Snapshot, training: Training | Mapping[str, Any] | None) -> Training:
    """The training record, with the git commit of the working tree unless one was given."""
    train = training_from(snapshot, training)
    if train.git_commit is None:
        commit, dirty = git_state()
        train = train.model_copy(update={"git_commit": commit, "git_dirty": dirty})
    return train


def _main_module(glob: Globals) -> torch.nn.Module | None:
    """The module described as the architecture: the ``model`` entry, else the first module (unwrapped from DDP)."""
    from torch.nn.parallel import DistributedDataParallel

    modules = [m for k, (m, o) in sorted(glob.items(), key=lambda kv: kv[0] != MODEL_ENTRY) if o is None]
    main = modules[0] if modules else None
    return main.module if isinstance(main, DistributedDataParallel) else main


def _commit(
    path: Path,
    tmp: Path,
    state: Mapping[str, Any],
    captured: _Captured,
    reports: list[Any],
    *,
    training: Training | Mapping[str, Any] | None,
    lineage: Lineage | Mapping[str, Any] | None,
) -> Manifest:
    """Rank 0, once every rank has written: the manifest last, then the atomic rename."""
    import torch.distributed as dist

    glob = captured.glob
    files = {n: FileRecord.model_validate(r) for report in reports for n, r in report["files"].items()}
    layout = _layout(captured.flat, reports, tmp)
    entries = _entries(glob, layout, reports)
    if captured.skeletons:
        write_json_file(tmp, STATE_FILE, captured.skeletons, files)
    if (tmp / DCP_DIR).is_dir():
        fsync_dir(tmp / DCP_DIR)
    main = _main_module(glob)
    manifest = Manifest(
        id=uuid.uuid4().hex,
        created_at=_now(),
        software=software_versions(),
        architecture=describe_module(main) if main is not None else None,
        training=_training(captured.snapshot, training),
        lineage=lineage if isinstance(lineage, Lineage) else Lineage.model_validate(dict(lineage or {})),
        entries={k: entries[k] for k in state},
        files=dict(sorted(files.items())),
        distributed={
            "world_size": len(reports),
            "backend": str(dist.get_backend()),
            "writer": WRITER,
            "dcp_dir": DCP_DIR,
            "global_entries": list(glob),
            "local_entries": [k for k in state if k not in glob],
            "ranks": [rank_dir(r) for r in range(len(reports))],
            "tensors": layout,
        },
    )
    write_manifest(tmp, manifest)  # fsyncs the manifest and the temp dir
    if path.exists():
        remove_tree(path)
    os.rename(tmp, path)
    fsync_dir(path.parent)
    return manifest
