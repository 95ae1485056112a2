"""Provenance by the weights: does a model come from the base it declares?

:func:`verify_lineage` compares a model with each declared parent tensor by tensor, reading one pair of tensors at a
time (never either model whole): identical / changed / missing / added, with cosine similarity and relative L2
change ‖m - b‖/‖b‖ computed in float64 (so a bfloat16 copy compares by value). A PEFT adapter is checked against
the base's modules instead (:mod:`openckpt.governance.adapters`).

Verdicts, per parent and overall (any ``not_derived`` parent makes the model ``not_derived``, else any
``unverifiable`` one makes it ``unverifiable``):

- ``consistent``: at least ``min_related`` of the base's informative parameters sit in tensors whose cosine with the
  model's is ≥ ``related_cosine``. Fine-tunes keep most tensors close to the base (cosine 0.5-1); a quantization
  keeps them at cosine ≈ 1; a linear merge keeps a clearly positive cosine with every parent (≈ 0.7 for two
  unrelated parents at equal weights). Independently initialised tensors of n elements have |cosine| ≈ 1/√n.
- ``not_derived``: below that, or an adapter whose modules or shapes the base does not have.
- ``unverifiable``: the base could not be read (absent, private, unreachable), or holds nothing to compare.

Tensors that are constant in the base (LayerNorm weights of ones, zero biases at initialisation) are *uninformative*:
every model of the architecture starts with them, so they are listed but never count as evidence.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.format.readers.base import FLOAT_DTYPES
from openckpt.format.similarity import similarity
from openckpt.governance.lineage import Edge, extract_edges
from openckpt.governance.lineage_checks import (
    THRESHOLDS,
    ParentCheck,
    Status,
    TensorCheck,
    Thresholds,
    Unavailable,
    Verdict,
    align_names,
)

if TYPE_CHECKING:
    from openckpt.format.readers import TensorSource

__all__ = [
    "THRESHOLDS",
    "LineageVerdict",
    "ParentCheck",
    "TensorCheck",
    "Thresholds",
    "Unavailable",
    "Verdict",
    "align_names",
    "compare_sources",
    "declared_edges",
    "verify_directory",
    "verify_lineage",
]

LINEAGE_FILES = ("README.md", "openckpt.json", "adapter_config.json")
_KINDS = {"finetune": "a fine-tune", "adapter": "an adapter", "merge": "a merge", "quantized": "a quantization"}


@dataclass(frozen=True)
class LineageVerdict:
    """The verdict on a model's declared lineage, with each parent's check and the thresholds applied."""

    model: str
    relation: str | None
    verdict: Verdict
    reason: str
    parents: list[ParentCheck]
    thresholds: Thresholds = THRESHOLDS

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "relation": self.relation,
            "verdict": self.verdict,
            "reason": self.reason,
            "thresholds": asdict(self.thresholds),
            "parents": [p.to_dict() for p in self.parents],
        }


def declared_edges(directory: Path) -> list[Edge]:
    """The bases a model directory declares (card, openckpt manifest, adapter config), as :mod:`.lineage` reads them."""
    paths = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    files = {name: (directory / name).read_bytes() for name in LINEAGE_FILES if (directory / name).is_file()}
    return extract_edges(files, paths=paths)


def _compare_pair(name: str, model_name: str, base: TensorSource, model: TensorSource) -> TensorCheck:
    eb, em = base.tensors[name], model.tensors[model_name]
    check = TensorCheck(
        name,
        "changed",
        em.dtype,
        list(em.shape),
        eb.numel,
        base_dtype=eb.dtype,
        model_name=None if model_name == name else model_name,
    )
    floats = eb.dtype in FLOAT_DTYPES and em.dtype in FLOAT_DTYPES
    tb, tm = base.read(name), model.read(model_name)
    note = None if eb.dtype == em.dtype else f"dtype {eb.dtype} → {em.dtype}, compared in float64"
    if eb.shape != em.shape:
        if not (floats and len(eb.shape) == len(em.shape) and eb.shape[1:] == em.shape[1:] and eb.shape):
            return replace(check, note=f"shape {list(eb.shape)} → {list(em.shape)}: not comparable")
        rows = min(eb.shape[0], em.shape[0])
        tb, tm = tb[:rows], tm[:rows]
        note = f"rows {eb.shape[0]} → {em.shape[0]}: the first {rows} compared"
    if not floats:
        import torch

        same = eb.dtype == em.dtype and torch.equal(tb, tm)
        return replace(
            check,
            status="identical" if same else "changed",
            informative=False,
            note=note or "not floating point: compared for equality only",
        )
    s = similarity(tb, tm)
    status: Status = "identical" if s.equal and eb.shape == em.shape else "changed"
    return replace(
        check,
        status=status,
        informative=not s.constant_ref,
        cosine=s.cosine,
        rel_l2=s.rel_l2,
        max_abs=s.max_abs,
        base_norm=math.sqrt(s.ref_sq),
        note=note,
    )


def _summary(checks: list[TensorCheck], thresholds: Thresholds) -> dict[str, Any]:
    compared = [c for c in checks if c.status in ("identical", "changed")]
    informative = [c for c in checks if c.informative and c.status != "added"]
    weight = sum(c.numel for c in informative)
    related = sum(c.numel for c in informative if c.cosine is not None and c.cosine >= thresholds.related_cosine)
    matched = sum(c.numel for c in informative if c.cosine is not None)
    cosines = [c.cosine for c in informative if c.cosine is not None]
    rel = [c.rel_l2 for c in informative if c.rel_l2 is not None]
    base_tensors = [c for c in checks if c.status != "added"]
    counts = {s: sum(c.status == s for c in checks) for s in ("identical", "changed", "missing", "added")}
    return {
        **counts,
        "base_tensors": len(base_tensors),
        "informative_tensors": len(informative),
        "uninformative_tensors": sum(not c.informative for c in base_tensors),
        "fraction_identical": counts["identical"] / len(base_tensors) if base_tensors else None,
        "fraction_identical_params": (
            sum(c.numel for c in compared if c.status == "identical") / max(1, sum(c.numel for c in base_tensors))
        ),
        "coverage": matched / weight if weight else None,
        "related_fraction": related / weight if weight else None,
        "median_cosine": statistics.median(cosines) if cosines else None,
        "mean_cosine": (
            sum(c.numel * c.cosine for c in informative if c.cosine is not None) / matched if matched else None
        ),
        "min_cosine": min(cosines) if cosines else None,
        "median_rel_l2": statistics.median(rel) if rel else None,
        "max_rel_l2": max(rel) if rel else None,
    }


def compare_sources(base: TensorSource, model: TensorSource) -> list[TensorCheck]:
    """Every weight of ``base`` against ``model``'s (aligned by :func:`align_names`), then the model's extra weights."""
    base_names = [n for n in base.tensors if base.is_weight(n)]
    model_names = [n for n in model.tensors if model.is_weight(n)]
    aligned = align_names(base_names, model_names)
    checks: list[TensorCheck] = []
    for name in base_names:
        entry = base.tensors[name]
        if name in aligned:
            checks.append(_compare_pair(name, aligned[name], base, model))
        else:
            checks.append(TensorCheck(name, "missing", entry.dtype, list(entry.shape), entry.numel, entry.dtype))
    taken = set(aligned.values())
    for name in model_names:
        if name not in taken:
            e = model.tensors[name]
            checks.append(TensorCheck(name, "added", e.dtype, list(e.shape), e.numel, informative=False))
    return checks


def _weights_verdict(base_id: str, checks: list[TensorCheck], relation: str | None, t: Thresholds) -> ParentCheck:
    summary = _summary(checks, t)
    related, cos = summary["related_fraction"], summary["mean_cosine"]
    notes: list[str] = []
    if related is None:
        return ParentCheck(
            base_id,
            "unverifiable",
            "the base holds no non-constant floating-point weight to compare",
            summary=summary,
            tensors=checks,
        )
    figures = (
        f"{related:.0%} of the base's informative parameters have cosine ≥ {t.related_cosine} "
        f"(mean cosine by parameter {cos if cos is None else round(cos, 4)}, coverage {summary['coverage']:.0%})"
    )
    if relation == "quantized" and (summary["max_rel_l2"] or 0) > t.quantized_rel_l2:
        notes.append(
            f"declared a quantization, but some tensors changed by up to {summary['max_rel_l2']:.3g} "
            f"relative L2 (rounding stays under {t.quantized_rel_l2}): more like a fine-tune"
        )
    if summary["identical"] == summary["base_tensors"] and not summary["added"]:
        notes.append("every weight is identical to the base's")
    if related >= t.min_related:
        return ParentCheck(base_id, "consistent", figures, summary=summary, tensors=checks, notes=notes)
    return ParentCheck(
        base_id,
        "not_derived",
        f"only {figures}; at least {t.min_related:.0%} needed",
        summary=summary,
        tensors=checks,
        notes=notes,
    )


def _check_parent(
    model: Path, base_id: str, base: Path | Unavailable, relation: str | None, t: Thresholds
) -> ParentCheck:
    from openckpt.format.readers import open_source, sniff
    from openckpt.governance.adapters import check_adapter, is_adapter

    if isinstance(base, Unavailable):
        return ParentCheck(base_id, "unverifiable", base.reason, method="none")
    entry = "model" if sniff(base) == "openckpt" else None
    with open_source(base, entry=entry) as sb:
        if is_adapter(model):
            return check_adapter(model, sb, base_id=base_id)
        with open_source(model, entry="model" if sniff(model) == "openckpt" else None) as sm:
            checks = compare_sources(sb, sm)
    return _weights_verdict(base_id, checks, relation, t)


def verify_lineage(
    model: Path,
    bases: Mapping[str, Path | Unavailable],
    *,
    relation: str | None,
    name: str | None = None,
    thresholds: Thresholds = THRESHOLDS,
) -> LineageVerdict:
    """Check ``model`` (a directory or file :func:`~openckpt.format.readers.open_source` reads) against each
    declared base (id → its weights on disk, or why they cannot be read) for the declared ``relation``."""
    label = name or model.resolve().name
    if not bases:
        return LineageVerdict(label, relation, "unverifiable", "the model declares no base model", [], thresholds)
    parents = [_check_parent(model, base_id, path, relation, thresholds) for base_id, path in bases.items()]
    by = {v: [p.base for p in parents if p.verdict == v] for v in ("not_derived", "unverifiable")}
    if by["not_derived"]:
        verdict: Verdict = "not_derived"
        reason = f"the weights do not come from {', '.join(by['not_derived'])}"
    elif by["unverifiable"]:
        verdict, reason = "unverifiable", f"cannot read {', '.join(by['unverifiable'])}"
    else:
        kind = _KINDS.get(relation or "", "a derivative")
        verdict, reason = "consistent", f"consistent with {kind} of {', '.join(bases)}"
    return LineageVerdict(label, relation, verdict, reason, parents, thresholds)


def verify_directory(
    directory: Path,
    *,
    resolve: Callable[[Edge], Path | Unavailable],
    name: str | None = None,
    thresholds: Thresholds = THRESHOLDS,
) -> LineageVerdict:
    """Read the bases ``directory`` declares, get each through ``resolve`` and run :func:`verify_lineage`."""
    edges = declared_edges(directory)
    relation = edges[0].relation if edges else None
    bases = {edge.base: resolve(edge) for edge in edges}
    return verify_lineage(directory, bases, relation=relation, name=name, thresholds=thresholds)
