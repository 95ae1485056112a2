"""Loading the checkpoint of one directory (a whole one, or one rank's part) into live objects, all or nothing.

Everything that can be checked is checked before the first target is touched: the manifest, every file's size and
blake3 (``verify=True``), every header against the manifest, and every tensor's name, shape and dtype against the
target. Only then are tensors read — straight into the existing parameters and optimizer state where they fit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.checkpoint.snapshot import STATE_FILE
from openckpt.checkpoint.stateful import adapt
from openckpt.checkpoint.tree import flatten, unflatten
from openckpt.errors import (
    FormatError,
    IntegrityError,
    ManifestError,
    StateMismatchError,
)
from openckpt.format.dtypes import dtype_name, torch_dtype
from openckpt.format.manifest import Manifest
from openckpt.format.tensorfile import TensorInfo, read_header, read_into, verify_blake3

if TYPE_CHECKING:
    import torch

__all__ = ["load_directory", "read_entry_headers"]


@dataclass
class _Plan:
    key: str
    kind: str
    target: Any
    files: dict[str, dict[str, TensorInfo]]
    dests: dict[str, torch.Tensor] = field(default_factory=dict)
    skeleton: Any = None
    aliases: dict[str, str] = field(default_factory=dict)


def read_entry_headers(directory: Path, manifest: Manifest, key: str) -> dict[str, dict[str, TensorInfo]]:
    """File → tensor infos of one entry, each checked against the manifest's tensor records."""
    out: dict[str, dict[str, TensorInfo]] = {}
    listed = {name.split("/", 1)[1] for name in manifest.tensors if name.split("/", 1)[0] == key}
    found: set[str] = set()
    for fname in manifest.entries[key].files:
        if fname not in manifest.files:
            raise ManifestError(f"entry {key!r} lists {fname!r}, which has no file record", path=directory)
        path = directory / fname
        if not path.is_file():
            raise IntegrityError("file is missing", path=path)
        infos, _ = read_header(path)
        for name, info in infos.items():
            rec = manifest.tensors.get(f"{key}/{name}")
            if rec is None or rec.file != fname or rec.dtype != info.dtype or tuple(rec.shape) != info.shape:
                raise IntegrityError(f"tensor {name!r} differs from the manifest", path=path)
        found |= set(infos)
        out[fname] = infos
    if found != listed:
        raise IntegrityError(f"entry {key!r}: tensors {sorted(listed - found)[:5]} are missing", path=directory)
    return out


def _describe(names: set[str]) -> str:
    shown = sorted(names)[:5]
    return ", ".join(shown) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _plan_module(plan: _Plan, module: torch.nn.Module) -> None:
    target = module.state_dict()
    stored = {n for infos in plan.files.values() for n in infos}
    expected = stored | set(plan.aliases)
    if set(target) != expected:
        parts = []
        if missing := set(target) - expected:
            parts.append(f"missing from checkpoint: {_describe(missing)}")
        if unexpected := expected - set(target):
            parts.append(f"not in the model: {_describe(unexpected)}")
        raise StateMismatchError(f"entry {plan.key!r}: " + "; ".join(parts))
    for infos in plan.files.values():
        for name, info in infos.items():
            t = target[name]
            if tuple(t.shape) != info.shape or t.dtype != torch_dtype(info.dtype):
                raise StateMismatchError(
                    f"entry {plan.key!r}: {name} is {info.dtype}{list(info.shape)} in the checkpoint, "
                    f"{dtype_name(t.dtype)}{list(t.shape)} in the model"
                )
            plan.dests[name] = t
    plan.target = target


def _plan_state(plan: _Plan, obj: Any) -> None:
    import torch

    _, current, _ = flatten(obj.state_dict())
    for infos in plan.files.values():
        for name, info in infos.items():
            dtype = torch_dtype(info.dtype)
            live = current.get(name)
            if live is not None and live.dtype == dtype and tuple(live.shape) == info.shape and not live.is_cuda:
                plan.dests[name] = live  # read straight into the existing state tensor
            else:
                plan.dests[name] = torch.empty(info.shape, dtype=dtype)
    check = getattr(obj, "check_state_dict", None)
    if callable(check):
        check(unflatten(plan.skeleton, plan.dests))  # raises on mismatch, mutates nothing


def _verify_used(directory: Path, manifest: Manifest, adapted: Mapping[str, Any], *, needs_state: bool) -> None:
    """Check size and blake3 of every file the requested entries read (and ``state.json`` when needed)."""
    used_files = {STATE_FILE} if needs_state and STATE_FILE in manifest.files else set()
    for key in adapted:
        used_files.update(manifest.entries[key].files)
    for fname in sorted(used_files):
        verify_blake3(directory / fname, manifest.files[fname].digest())


def _read_skeletons(directory: Path) -> dict[str, Any]:
    """The JSON skeletons of the non-module entries, from ``state.json``."""
    try:
        skeletons: dict[str, Any] = json.loads((directory / STATE_FILE).read_bytes())
    except (OSError, ValueError) as e:
        raise FormatError(f"cannot read: {e}", path=directory / STATE_FILE) from e
    return skeletons


def _plan(directory: Path, manifest: Manifest, key: str, kind: str, obj: Any, skeletons: Mapping[str, Any]) -> _Plan:
    """Where each tensor of entry ``key`` goes in ``obj``, every header and target checked first."""
    record = manifest.entries[key]
    if (record.kind == "module") != (kind == "module"):
        raise StateMismatchError(f"entry {key!r} is a {record.kind} in the checkpoint, a {kind} in the state")
    plan = _Plan(key, kind, obj, read_entry_headers(directory, manifest, key), aliases=record.aliases)
    if kind == "module":
        _plan_module(plan, obj)
    else:
        if key not in skeletons:
            raise FormatError(f"no state recorded for entry {key!r}", path=directory / STATE_FILE)
        plan.skeleton = skeletons[key]
        _plan_state(plan, obj)
    return plan


def _apply(directory: Path, plan: _Plan, obj: Any) -> None:
    """Read the tensors of ``plan`` into place, then re-tie aliases or load the entry's state dict."""
    for fname, infos in plan.files.items():
        read_into(directory / fname, {n: plan.dests[n] for n in infos}, infos)
    if plan.kind == "module":
        for alias, stored in plan.aliases.items():
            a, s = plan.target[alias], plan.target[stored]
            if a.untyped_storage().data_ptr() != s.untyped_storage().data_ptr():
                a.copy_(s)
    else:
        obj.load_state_dict(unflatten(plan.skeleton, plan.dests))


def load_directory(directory: Path, manifest: Manifest, state: Mapping[str, Any], *, verify: bool = True) -> Manifest:
    """Load the checkpoint of ``directory``, whose manifest is ``manifest``, into the objects of ``state``.

    Entries of the checkpoint that ``state`` does not name are ignored (load only the model for inference).
    Raises :class:`StateMismatchError`, :class:`IntegrityError` or :class:`FormatError` before mutating anything.
    """
    import torch

    adapted = adapt(state)
    if missing := set(adapted) - set(manifest.entries):
        raise StateMismatchError(f"checkpoint has no entries {_describe(missing)}", path=directory)
    needs_state = any(kind != "module" for kind, _ in adapted.values())
    if verify:
        _verify_used(directory, manifest, adapted, needs_state=needs_state)
    skeletons = _read_skeletons(directory) if needs_state else {}
    plans = [_plan(directory, manifest, key, kind, obj, skeletons) for key, (kind, obj) in adapted.items()]
    with torch.no_grad():
        for plan in plans:
            _apply(directory, plan, adapted[plan.key][1])
    return manifest
