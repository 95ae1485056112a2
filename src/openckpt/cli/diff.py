"""``openckpt diff A B``: per tensor identical / changed / added / removed, with max-abs and relative-L2 change."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from openckpt.cli._output import EXIT_FINDINGS, byte_progress, err, fmt_float, guard, human_bytes, out, print_json

if TYPE_CHECKING:
    import torch

    from openckpt.format.readers import TensorEntry, TensorSource

__all__ = ["TensorDiff", "compare", "diff_command"]

Status = Literal["identical", "changed", "added", "removed"]
CHUNK = 1 << 22
"""Elements compared at a time, so float64 temporaries stay small."""


@dataclass(frozen=True)
class TensorDiff:
    """How tensor ``name`` differs from A to B; ``dtype``, ``shape`` and ``bytes`` are B's (A's if removed)."""

    name: str
    status: Status
    dtype: str
    shape: list[int]
    bytes: int
    max_abs: float | None = None
    """max |b - a| over elements, computed in float64."""
    rel_l2: float | None = None
    """‖b - a‖₂ / ‖a‖₂ (inf if a is all zeros and b is not)."""
    note: str | None = None


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    import torch

    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def _metrics(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max-abs, relative-L2) of ``b - a``, in float64, chunk by chunk."""
    import torch

    x, y = a.reshape(-1), b.reshape(-1)
    max_abs, diff_sq, base_sq = 0.0, 0.0, 0.0
    for i in range(0, x.numel(), CHUNK):
        xa, ya = x[i : i + CHUNK].to(torch.float64), y[i : i + CHUNK].to(torch.float64)
        d = ya - xa
        m = d.abs().max().item()
        if not math.isnan(max_abs) and (math.isnan(m) or m > max_abs):
            max_abs = m
        diff_sq += (d * d).sum().item()
        base_sq += (xa * xa).sum().item()
    if base_sq == 0:
        return max_abs, 0.0 if diff_sq == 0 else math.inf
    return max_abs, math.sqrt(diff_sq) / math.sqrt(base_sq)


def _compare_one(name: str, ea: TensorEntry, eb: TensorEntry, a: TensorSource, b: TensorSource) -> TensorDiff:
    same_layout = ea.dtype == eb.dtype and ea.shape == eb.shape
    identical = TensorDiff(name, "identical", eb.dtype, list(eb.shape), eb.nbytes)
    if same_layout and ea.blake3 is not None and ea.blake3 == eb.blake3:
        return replace(identical, note="equal blake3")
    if ea.shape != eb.shape:
        return replace(identical, status="changed", note=f"shape {list(ea.shape)} → {list(eb.shape)}")
    ta, tb = a.read(name), b.read(name)
    if same_layout and _same_bytes(ta, tb):
        return identical
    max_abs, rel_l2 = _metrics(ta, tb)
    note = None if same_layout else f"dtype {ea.dtype} → {eb.dtype}"
    return replace(identical, status="changed", max_abs=max_abs, rel_l2=rel_l2, note=note)


def compare(a: TensorSource, b: TensorSource, *, progress: Callable[[int], None] | None = None) -> list[TensorDiff]:
    """Compare two sources tensor by tensor, reading one pair at a time; equal recorded blake3s skip the read."""
    diffs: list[TensorDiff] = []
    for name, ea in a.tensors.items():
        eb = b.tensors.get(name)
        if eb is None:
            diffs.append(TensorDiff(name, "removed", ea.dtype, list(ea.shape), ea.nbytes))
        else:
            diffs.append(_compare_one(name, ea, eb, a, b))
        if progress is not None:
            progress(ea.nbytes)
    for name, eb in b.tensors.items():
        if name not in a.tensors:
            diffs.append(TensorDiff(name, "added", eb.dtype, list(eb.shape), eb.nbytes))
    return diffs


def _summary(diffs: list[TensorDiff]) -> dict[str, int]:
    counts = {s: sum(d.status == s for d in diffs) for s in ("identical", "changed", "added", "removed")}
    changed = sum(d.bytes for d in diffs if d.status in ("changed", "added"))
    return {**counts, "bytes_changed": changed}


def _render(diffs: list[TensorDiff], summary: dict[str, int], show_all: bool) -> None:
    colors = {"identical": "dim", "changed": "yellow", "added": "green", "removed": "red"}
    shown = [d for d in diffs if show_all or d.status != "identical"]
    rows = [
        {
            "tensor": escape(d.name),
            "status": f"[{colors[d.status]}]{d.status}[/]",
            "dtype": d.dtype,
            "shape": str(d.shape),
            "max abs": fmt_float(d.max_abs),
            "rel L2": fmt_float(d.rel_l2),
            "note": escape(d.note or ""),
        }
        for d in shown
    ]
    empty = {"max abs": "-", "rel L2": "-", "note": ""}
    columns = [c for c in rows[0] if any(row[c] != empty.get(c) for row in rows)] if rows else []
    table = Table(box=None)
    for column in columns:
        table.add_column(column, overflow="fold", justify="right" if column in ("max abs", "rel L2") else "left")
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    console = out()
    if rows:
        console.print(table)
    counts = ", ".join(f"{summary[s]} {s}" for s in colors)
    console.print(f"{counts}; {human_bytes(summary['bytes_changed'])} changed")


def _by_layer(base: Path, model: Path, as_json: bool) -> None:
    """``diff --base BASE MODEL``: which layers MODEL changed from BASE, and by how much."""
    from openckpt.governance.layerdiff import layer_changes

    parent, layers = layer_changes(base, model)
    if as_json:
        layer_dicts = [layer.to_dict() for layer in layers]
        print_json({"base": str(base), "model": str(model), "summary": parent.summary, "layers": layer_dicts})
    else:
        table = Table(box=None)
        for column in ("layer", "tensors", "changed", "missing", "added", "rel L2", "min cosine"):
            table.add_column(column, overflow="fold", justify="left" if column == "layer" else "right")
        for x in layers:
            counts = (str(x.tensors), str(x.changed), str(x.missing), str(x.added))
            table.add_row(escape(x.layer), *counts, fmt_float(x.rel_l2), fmt_float(x.min_cosine))
        out().print(table)
        out().print(f"{sum(x.changed > 0 for x in layers)} of {len(layers)} layers changed")
    if any(x.changed or x.missing or x.added for x in layers):
        raise typer.Exit(EXIT_FINDINGS)


@guard
def diff_command(
    a: Annotated[Path, typer.Argument(help="Checkpoint, safetensors file, HF directory, .pt or .npz.")],
    b: Annotated[Path | None, typer.Argument(help="The same kinds as A (not with --base).")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="List identical tensors too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    base: Annotated[
        Path | None,
        typer.Option(
            "--base",
            help="Show which layers A (a fine-tune, quantization, merge or PEFT adapter) changed "
            "from this base, and by how much (relative L2 by layer).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare tensors of A and B; exit 1 if any differ (like diff(1)).

    Two openckpt checkpoints are compared entry by entry (names ``<entry>/<tensor>``); against any other
    source, a checkpoint's ``model`` entry is compared. ``diff --base BASE A`` groups the changes by layer.
    """
    from openckpt.format.readers import open_source, sniff

    if base is not None:
        if b is not None:
            raise typer.BadParameter("give either B or --base, not both")
        return _by_layer(base, a, as_json)
    if b is None:
        raise typer.BadParameter("missing B (or --base)")

    both_native = sniff(a) == "openckpt" and sniff(b) == "openckpt"
    entry = None if both_native else "model"
    with open_source(a, entry=entry) as sa, open_source(b, entry=entry) as sb:
        total = sum(e.nbytes for e in sa.tensors.values())
        with byte_progress(err()) as bar:
            task = bar.add_task("comparing", total=total)
            diffs = compare(sa, sb, progress=lambda n: bar.advance(task, n))
    summary = _summary(diffs)
    if as_json:
        print_json({"a": str(a), "b": str(b), "summary": summary, "tensors": [asdict(d) for d in diffs]})
    else:
        _render(diffs, summary, show_all)
    if summary["identical"] != len(diffs):
        raise typer.Exit(EXIT_FINDINGS)
