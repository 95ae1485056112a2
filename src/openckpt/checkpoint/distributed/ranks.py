"""What the ranks share: whether we are distributed, JSON messages between ranks, agreeing on failure, and which
state goes through DCP (modules, optimizers) and which stays with its rank."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from openckpt.checkpoint.stateful import adapt
from openckpt.errors import (
    CheckpointExistsError,
    CheckpointNotFoundError,
    FormatError,
    IntegrityError,
    ManifestError,
    OpenckptError,
    StateMismatchError,
    UnsupportedStateError,
)

if TYPE_CHECKING:
    import torch

__all__ = ["DCP_DIR", "Globals", "agree", "is_distributed", "param_fqns", "rank_dir", "rank_world", "split_state"]

DCP_DIR = "dcp"
Globals = dict[str, tuple["torch.nn.Module", "torch.optim.Optimizer | None"]]
"""Entry → (module, None) for a module, (module owning its parameters, optimizer) for an optimizer."""

_RAISABLE = {
    cls.__name__: cls
    for cls in (
        FormatError,
        ManifestError,
        IntegrityError,
        StateMismatchError,
        UnsupportedStateError,
        CheckpointExistsError,
        CheckpointNotFoundError,
    )
}


def is_distributed() -> bool:
    """True inside an initialised torch.distributed run of more than one rank (never imports torch itself)."""
    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def rank_world() -> tuple[int, int]:
    """(rank, world size), (0, 1) outside a distributed run."""
    if not is_distributed():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def rank_dir(rank: int) -> str:
    """Name of the sub-directory holding ``rank``'s local state."""
    return f"rank-{rank:05d}"


def _all_gather_json(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, sent as JSON bytes."""
    import torch
    import torch.distributed as dist

    backend = str(dist.get_backend())
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    data = json.dumps(obj).encode()
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    buf = torch.zeros(max(lengths), dtype=torch.uint8)
    buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    bufs = [torch.empty(max(lengths), dtype=torch.uint8, device=device) for _ in lengths]
    dist.all_gather(bufs, buf.to(device))
    return [json.loads(b[:n].cpu().numpy().tobytes()) for b, n in zip(bufs, lengths, strict=True)]


def agree(error: Exception | None, extra: Any = None) -> list[Any]:
    """Exchange ``extra`` between the ranks; if any rank failed, every rank raises the first failure's class.

    So every rank makes the same decision (the manager skipping a corrupt checkpoint, say) and none is left waiting
    in a collective the others never enter. Outside a distributed run: raise ``error`` or return ``[extra]``.
    """
    rank, _ = rank_world()
    mine = {"error": None if error is None else [type(error).__name__, str(error)], "extra": extra}
    reports = _all_gather_json(mine) if is_distributed() else [mine]
    for r, report in enumerate(reports):
        if report["error"] is not None:
            if r == rank and error is not None:
                raise error
            name, message = report["error"]
            raise _RAISABLE.get(name, OpenckptError)(f"rank {r} failed: {message}") from error
    return [report["extra"] for report in reports]


def split_state(state: Mapping[str, Any]) -> tuple[Globals, dict[str, Any]]:
    """Modules and optimizers go through DCP; the rest (RNG, loader, counters ...) is saved per rank."""
    import torch

    adapt(state)  # the key and type rules of a single-process save
    modules = {k: v for k, v in state.items() if isinstance(v, torch.nn.Module)}
    glob: Globals = {}
    local: dict[str, Any] = {}
    for key, obj in state.items():
        if isinstance(obj, torch.nn.Module):
            glob[key] = (obj, None)
        elif isinstance(obj, torch.optim.Optimizer):
            params = {id(p) for group in obj.param_groups for p in group["params"]}
            owner = next((m for m in modules.values() if params <= {id(p) for p in m.parameters()}), None)
            if owner is None:
                raise UnsupportedStateError(
                    f"optimizer {key!r}: no module of the state holds all its parameters (needed to name them)"
                )
            glob[key] = (owner, obj)
        else:
            local[key] = obj
    return glob, local


def param_fqns(module: torch.nn.Module) -> dict[int, str]:
    """``id(parameter)`` → the name torch's distributed state dicts use (no DDP or torch.compile prefixes)."""
    from torch.distributed.checkpoint.state_dict import _get_fqns

    out: dict[int, str] = {}
    for name, p in module.named_parameters():
        fqns = _get_fqns(module, name)
        if len(fqns) == 1:
            out[id(p)] = next(iter(fqns))
    return out
