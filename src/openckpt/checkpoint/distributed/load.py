"""Loading a checkpoint saved by several ranks: checks everywhere first, then rank-local state, then DCP.

1. Every rank checks what it can without touching its objects: the manifest's layout, the world size (rank-local
   entries need the one they were saved with), names, shapes and dtypes against the targets, and the digests of its
   share of DCP's files, of ``state.json`` and of its own ``rank-<r>/openckpt.json``. The ranks agree.
2. Every rank loads its ``rank-<r>/`` with the ordinary :func:`openckpt.load`. The ranks agree; if one failed, the
   others put their objects back as they were.
3. DCP reads the modules and optimizers (resharding if the world size changed) into the live tensors.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.checkpoint.distributed.ranks import (
    DCP_DIR,
    Globals,
    agree,
    is_distributed,
    param_fqns,
    rank_dir,
    rank_world,
    split_state,
)
from openckpt.checkpoint.restore_local import load_directory
from openckpt.checkpoint.snapshot import STATE_FILE
from openckpt.checkpoint.stateful import adapt
from openckpt.checkpoint.tree import flatten, unflatten
from openckpt.errors import FormatError, IntegrityError, ManifestError, StateMismatchError
from openckpt.format.dtypes import dtype_name
from openckpt.format.manifest import MANIFEST_NAME, Manifest, read_manifest
from openckpt.format.tensorfile import verify_blake3

if TYPE_CHECKING:
    import torch

__all__ = ["load_distributed"]


def _check_tensors(key: str, saved: Mapping[str, Any], live: Mapping[str, Any]) -> None:
    import torch

    if set(saved) != set(live):
        missing, extra = sorted(set(live) - set(saved))[:5], sorted(set(saved) - set(live))[:5]
        raise StateMismatchError(f"entry {key!r}: missing from checkpoint: {missing}; not in the target: {extra}")
    for name, t in live.items():
        rec = saved[name]
        if not isinstance(t, torch.Tensor) or list(t.shape) != rec["shape"] or dtype_name(t.dtype) != rec["dtype"]:
            here = f"{t.dtype}{list(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__qualname__
            raise StateMismatchError(f"entry {key!r}: {name} is {rec['dtype']}{rec['shape']} in the checkpoint, {here}")


def _check_entries(directory: Path, manifest: Manifest, state: Mapping[str, Any], glob: Globals) -> None:
    global_entries = (manifest.distributed or {})["global_entries"]
    if missing := set(state) - set(manifest.entries):
        raise StateMismatchError(f"checkpoint has no entries {sorted(missing)}", path=directory)
    for key in state:
        saved_kind = manifest.entries[key].kind
        kind = ("module" if glob[key][1] is None else "optimizer") if key in glob else None
        if (key in global_entries) != (kind is not None) or (kind is not None and kind != saved_kind):
            raise StateMismatchError(
                f"entry {key!r} is a {saved_kind} in the checkpoint, a {kind or 'rank-local'} here"
            )


def _verify(directory: Path, manifest: Manifest, glob: Globals, local: Mapping[str, Any]) -> None:
    """Digests of this rank's share of the DCP files, of state.json and of this rank's nested manifest."""
    rank, world = rank_world()
    tensors: dict[str, Any] = (manifest.distributed or {})["tensors"]
    needed = {c["file"] for n, rec in tensors.items() if n.split("/", 1)[0] in glob for c in rec["chunks"]}
    checked = sorted(needed)[rank::world]
    checked += [STATE_FILE] if any(o is not None for _, o in glob.values()) else []
    checked += [f"{rank_dir(rank)}/{MANIFEST_NAME}"] if local else []
    for fname in checked:
        if fname not in manifest.files:
            raise ManifestError(f"{fname} has no file record", path=directory / MANIFEST_NAME)
        verify_blake3(directory / fname, manifest.files[fname].digest())


def _saved_layout(directory: Path, manifest: Manifest) -> tuple[int, dict[str, Any]]:
    """The saved world size and global tensor layout from the manifest's ``distributed`` section."""
    layout = manifest.distributed or {}
    try:
        saved_world, tensors = int(layout["world_size"]), dict(layout["tensors"])
        if not isinstance(layout["global_entries"], list):
            raise TypeError("global_entries is not a list")
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"invalid 'distributed' section: {e}", path=directory / MANIFEST_NAME) from e
    return saved_world, tensors


def _check_dcp_files(directory: Path, manifest: Manifest) -> None:
    """DCP's reader reads every file of ``dcp/``: they must be exactly the ones the manifest records."""
    recorded = {f for f in manifest.files if f.startswith(f"{DCP_DIR}/")}
    dcp = directory / DCP_DIR
    found = {f"{DCP_DIR}/{p.name}" for p in dcp.iterdir()} if dcp.is_dir() else set()
    if found != recorded:
        raise IntegrityError(f"dcp/ differs from the manifest: {sorted(found ^ recorded)[:5]}", path=directory)


def _read_skeletons(directory: Path, glob: Globals) -> dict[str, Any]:
    """The optimizers' JSON skeletons from ``state.json`` (empty when no optimizer is loaded)."""
    if all(o is None for _, o in glob.values()):
        return {}
    try:
        skeletons: dict[str, Any] = json.loads((directory / STATE_FILE).read_bytes())
    except (OSError, ValueError) as e:
        raise FormatError(f"cannot read: {e}", path=directory / STATE_FILE) from e
    return skeletons


def _optimizer_targets(
    directory: Path,
    key: str,
    module: torch.nn.Module,
    optim: torch.optim.Optimizer,
    *,
    skeleton: Any,
    saved: Mapping[str, Any],
    fresh: list[torch.optim.Optimizer],
) -> dict[str, Any]:
    """The live tensors of optimizer ``key``, checked against its saved parameter groups.

    An optimizer with an empty state gets one allocated (and is added to ``fresh``) when the checkpoint has state.
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    if skeleton is None:
        raise FormatError(f"no state recorded for entry {key!r}", path=directory / STATE_FILE)
    fqn = param_fqns(module)
    groups = [g["params"] for g in skeleton["param_groups"]]
    if groups != [[fqn.get(id(p)) for p in g["params"]] for g in optim.param_groups]:
        raise StateMismatchError(f"optimizer {key!r}: its parameter groups differ from the checkpoint's")
    if not saved:
        return {}
    if not optim.state:
        fresh.append(optim)  # torch allocates its state with a zero-lr step; the load overwrites it
    return dict(flatten(get_optimizer_state_dict(module, optim))[1])


def _prepare(
    directory: Path, manifest: Manifest, state: Mapping[str, Any], verify: bool, fresh: list[torch.optim.Optimizer]
) -> tuple[Globals, dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """Every check that can be made before anything is loaded; returns the DCP targets and optimizer skeletons.

    Optimizers whose empty state had to be allocated as targets are added to ``fresh``.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    saved_world, tensors = _saved_layout(directory, manifest)
    glob, local = split_state(state)
    _check_entries(directory, manifest, state, glob)
    _, world = rank_world()
    if local and world != saved_world:
        raise StateMismatchError(
            f"saved by {saved_world} ranks, loading into {world}: rank-local entries {sorted(local)} cannot be "
            "resharded (load only modules and optimizers to change the world size)",
            path=directory,
        )
    if glob:
        _check_dcp_files(directory, manifest)
    if verify:
        _verify(directory, manifest, glob, local)
    skeletons = _read_skeletons(directory, glob)
    targets: dict[str, torch.Tensor] = {}
    for key, (module, optim) in glob.items():
        saved = {n.split("/", 1)[1]: rec for n, rec in tensors.items() if n.split("/", 1)[0] == key}
        live: dict[str, Any]
        if optim is None:
            live = dict(get_model_state_dict(module))
        else:
            live = _optimizer_targets(
                directory, key, module, optim, skeleton=skeletons.get(key), saved=saved, fresh=fresh
            )
        _check_tensors(key, saved, live)
        targets.update({f"{key}/{n}": t for n, t in live.items()})
    return glob, local, targets, skeletons


def _remember(state: Mapping[str, Any]) -> Callable[[], None]:
    """A function that puts the objects of ``state`` back as they are now."""
    saved = []
    for _, obj in adapt(state).values():
        skeleton, tensors, _ = flatten(obj.state_dict())
        saved.append((obj, skeleton, {n: t.clone() for n, t in tensors.items()}))

    def undo() -> None:
        for obj, skeleton, tensors in saved:
            obj.load_state_dict(unflatten(skeleton, tensors))

    return undo


def load_distributed(directory: Path, manifest: Manifest, state: Mapping[str, Any], *, verify: bool = True) -> Manifest:
    """:func:`openckpt.load` of a checkpoint saved by several ranks; collective when torch.distributed is on."""
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
    from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

    error: Exception | None = None
    fresh: list[torch.optim.Optimizer] = []
    undo: Callable[[], None] | None = None
    try:
        glob, local, targets, skeletons = _prepare(directory, manifest, state, verify, fresh)
    except Exception as e:
        error = e
    try:
        agree(error)
        try:  # the rank-local entries: an ordinary load, undone below if another rank fails
            if local:
                undo = _remember(local)
                rank_part = directory / rank_dir(rank_world()[0])
                load_directory(rank_part, read_manifest(rank_part), local, verify=verify)
        except Exception as e:
            error = e
        agree(error)
    except Exception:
        if error is None and undo is not None:
            undo()
        for allocated in fresh:
            allocated.state.clear()
        raise

    if targets:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                reader = HuggingFaceStorageReader(str(directory / DCP_DIR))
                dcp_load(targets, storage_reader=reader, no_dist=not is_distributed())
        except Exception as e:  # DCP raises on every rank alike
            raise FormatError(f"torch.distributed.checkpoint could not load: {e}", path=directory / DCP_DIR) from e
    for key, (module, optim) in glob.items():
        mine: dict[str, Any] = {n.split("/", 1)[1]: t for n, t in targets.items() if n.split("/", 1)[0] == key}
        if optim is None:
            set_model_state_dict(module, mine)
        elif mine:
            set_optimizer_state_dict(module, optim, unflatten(skeletons[key], mine))
        else:  # saved before the first step: no state; groups checked to be in the same order
            optim.load_state_dict(unflatten(skeletons[key], mine))
    return manifest
