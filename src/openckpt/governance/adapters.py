"""A PEFT LoRA adapter against the base it declares: do its modules and shapes fit that base?

Each adapted module needs a weight in the base (``<module>.weight``, the ``base_model.model.`` prefix removed)
whose input and output features match ``lora_A`` (r x in) and ``lora_B`` (out x r): ``Linear`` weights are
out x in (in x out with ``fan_in_fan_out``, GPT-2's ``Conv1D``), convolutions out x in x k…, embeddings
``lora_embedding_A`` (r x num) and ``lora_embedding_B`` (dim x r) against num x dim. Every entry of
``target_modules`` must name modules of the base. The relative size of each update ‖scale·B·A‖ / ‖W‖ is reported.

An adapter's weights hold nothing of the base beyond its shapes: a fitting adapter is *consistent* with every base
of that architecture, which the check says in its notes. Other tensors of the adapter (``modules_to_save``) are
compared with the base's like a fine-tune's.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.format.similarity import similarity

if TYPE_CHECKING:
    from openckpt.format.readers import TensorSource
    from openckpt.governance.lineage_checks import ParentCheck

__all__ = ["check_adapter", "is_adapter"]

_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+?)\.(?P<kind>lora_(?:A|B|embedding_A|embedding_B|magnitude_vector))(?:\.[^.]+)*$")


def _config(directory: Path) -> dict[str, Any]:
    path = directory / "adapter_config.json"
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_adapter(path: Path) -> bool:
    """Whether ``path`` is a PEFT adapter directory (``adapter_config.json`` and ``adapter_model.*`` weights)."""
    return path.is_dir() and (path / "adapter_config.json").is_file() and any(path.glob("adapter_model.*"))


def _module_name(tensor: str) -> str:
    name = tensor[len(_PREFIX) :] if tensor.startswith(_PREFIX) else tensor
    return name.replace(".modules_to_save.default", "").replace(".modules_to_save", "")


def _features(weight: tuple[int, ...], kind: str, fan_in_fan_out: bool) -> list[tuple[int, int, str | None]]:
    """Possible (in, out) features of a base weight for LoRA ``kind``, preferred first, with a note if unusual."""
    if kind.startswith("lora_embedding"):
        return [(weight[0], weight[1], None)] if len(weight) == 2 else []
    if len(weight) == 2:
        first = (weight[0], weight[1]) if fan_in_fan_out else (weight[1], weight[0])
        return [
            (*first, None),
            (first[1], first[0], "the weight's orientation is the other one than fan_in_fan_out says"),
        ]
    if len(weight) > 2:
        return [(weight[1], weight[0], None)]
    return []


def _update_norm(a: Any, b: Any) -> float:
    """‖B·A‖_F without forming B·A: √trace((BᵀB)(AAᵀ))."""
    import torch

    a2, b2 = a.reshape(a.shape[0], -1).to(torch.float64), b.reshape(b.shape[0], -1).to(torch.float64)
    if b2.shape[1] != a2.shape[0]:
        b2 = b2.T
    return math.sqrt(max(0.0, float(torch.trace((b2.T @ b2) @ (a2 @ a2.T)))))


def _targets_missing(targets: Any, modules: set[str]) -> list[str]:
    if isinstance(targets, str):
        if targets == "all-linear":
            return []
        pattern = re.compile(targets)
        return [] if any(pattern.fullmatch(m) for m in modules) else [targets]
    if isinstance(targets, list):
        return [t for t in targets if isinstance(t, str) and not any(m == t or m.endswith("." + t) for m in modules)]
    return []


def check_adapter(directory: Path, base: TensorSource, *, base_id: str) -> ParentCheck:
    """Check the PEFT adapter in ``directory`` against ``base``'s weights."""
    from openckpt.format.readers import open_source
    from openckpt.governance.lineage_checks import ParentCheck, TensorCheck, align_names

    config = _config(directory)
    fan = bool(config.get("fan_in_fan_out"))
    base_weights = [n for n in base.tensors if base.is_weight(n)]
    base_modules = {n.rsplit(".", 1)[0] for n in base_weights if "." in n}
    problems: list[str] = []
    modules: list[dict[str, Any]] = []
    others: list[TensorCheck] = []
    with open_source(directory) as adapter:
        groups: dict[str, dict[str, str]] = {}
        plain: list[str] = []
        for name in adapter.tensors:
            m = _LORA.match(name)
            if m:
                groups.setdefault(_module_name(m["module"]), {})[m["kind"]] = name
            else:
                plain.append(name)
        if not groups:
            return ParentCheck(base_id, "unverifiable", "the adapter holds no LoRA weights", method="adapter")
        wanted = [f"{m}.weight" for m in groups] + [_module_name(n) for n in plain]
        aligned = align_names(wanted, base_weights)
        r = config.get("r") if isinstance(config.get("r"), int) else None
        alpha = config.get("lora_alpha") if isinstance(config.get("lora_alpha"), int | float) else None
        for module, parts in sorted(groups.items()):
            row: dict[str, Any] = {"module": module, "base_tensor": aligned.get(f"{module}.weight"), "ok": False}
            modules.append(row)
            a_name = parts.get("lora_A") or parts.get("lora_embedding_A")
            b_name = parts.get("lora_B") or parts.get("lora_embedding_B")
            if row["base_tensor"] is None:
                problems.append(f"adapts {module}, which the base does not have")
                row["note"] = "no such module in the base"
                continue
            if a_name is None or b_name is None:
                row["ok"], row["note"] = True, "no lora_A/lora_B pair (only " + ", ".join(sorted(parts)) + ")"
                continue
            weight = base.tensors[row["base_tensor"]].shape
            sa, sb = adapter.tensors[a_name].shape, adapter.tensors[b_name].shape
            kind = "lora_embedding" if "embedding" in a_name else "lora"
            row.update(base_shape=list(weight), lora_A=list(sa), lora_B=list(sb), rank=sa[0] if sa else None)
            fits = [
                (note)
                for i, o, note in _features(weight, kind, fan)
                if len(sa) >= 2 and len(sb) >= 2 and sa[1] == i and sb[0] == o and sb[1] == sa[0]
            ]
            if not fits:
                problems.append(
                    f"{module}: lora_A {list(sa)} and lora_B {list(sb)} do not fit the base's weight {list(weight)}"
                )
                row["note"] = "shapes do not fit the base"
                continue
            row["ok"] = True
            if fits[0]:
                row["note"] = fits[0]
            rank = sa[0]
            scale = (alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)) if alpha and rank else 1.0
            w_norm = float(base.read(row["base_tensor"]).to(dtype=_f64()).norm())
            update = scale * _update_norm(adapter.read(a_name), adapter.read(b_name))
            row.update(rel_update=update / w_norm if w_norm else None, base_norm=w_norm)
        for name in plain:
            target = aligned.get(_module_name(name))
            entry = adapter.tensors[name]
            if target is None or base.tensors[target].numel != entry.numel:
                others.append(
                    TensorCheck(name, "added", entry.dtype, list(entry.shape), entry.numel, informative=False)
                )
                continue
            s = similarity(base.read(target), adapter.read(name))
            others.append(
                TensorCheck(
                    name,
                    "identical" if s.equal else "changed",
                    entry.dtype,
                    list(entry.shape),
                    entry.numel,
                    base.tensors[target].dtype,
                    not s.constant_ref,
                    s.cosine,
                    s.rel_l2,
                    s.max_abs,
                    math.sqrt(s.ref_sq),
                    target,
                )
            )
    problems += [
        f"target module {t!r} matches no module of the base"
        for t in _targets_missing(config.get("target_modules"), base_modules)
    ]
    updates = [m["rel_update"] for m in modules if m.get("rel_update") is not None]
    summary = {
        "modules": len(modules),
        "fitting": sum(m["ok"] for m in modules),
        "problems": len(problems),
        "rank": r,
        "lora_alpha": alpha,
        "target_modules": config.get("target_modules"),
        "median_rel_update": statistics.median(updates) if updates else None,
        "max_rel_update": max(updates) if updates else None,
    }
    notes = ["an adapter's weights carry no trace of the base beyond its shapes: any base of this architecture fits"]
    if problems:
        return ParentCheck(
            base_id,
            "not_derived",
            "; ".join(problems[:5]),
            method="adapter",
            summary=summary,
            tensors=others,
            modules=modules,
            notes=notes,
        )
    reason = f"all {len(modules)} adapted modules exist in the base with fitting shapes"
    return ParentCheck(
        base_id, "consistent", reason, method="adapter", summary=summary, tensors=others, modules=modules, notes=notes
    )


def _f64() -> Any:
    import torch

    return torch.float64
