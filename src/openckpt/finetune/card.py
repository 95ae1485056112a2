"""The model card of a fine-tune: YAML front matter per the Hub's conventions and a short markdown body.

Front matter: ``license``, ``base_model`` (+ ``base_model_revision``, the commit trained from),
``base_model_relation`` (``adapter`` or ``finetune``), ``datasets`` (the data file's name), ``library_name``,
``pipeline_tag``, ``model-index`` with the held-out metrics (the dataset's ``revision`` is ``sha256:<digest>``).
The body repeats them and lists what the base's license asks of this model, with the governance engine's status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from openckpt.governance.compat import Obligation

__all__ = ["CardFacts", "render_card"]

_PIPELINE = {"text-classification": "text-classification", "causal-lm": "text-generation"}


@dataclass(frozen=True)
class CardFacts:
    name: str
    base_model: str
    base_revision: str | None
    relation: str
    """``adapter`` (a PEFT adapter) or ``finetune`` (full, or LoRA merged into the weights)."""
    method: str
    task: str
    license: str | None
    dataset: str
    dataset_sha256: str
    train_rows: int
    eval_rows: int
    metrics: Mapping[str, float]
    hyperparameters: Mapping[str, Any]
    steps: int
    trainable_parameters: int
    total_parameters: int
    environment: str | None = None
    """One line: device, precision, torch, Python and the package list's digest (from the recipe)."""


def _metadata(c: CardFacts) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if c.license:
        meta["license"] = c.license
    meta["base_model"] = c.base_model
    if c.base_revision:
        meta["base_model_revision"] = c.base_revision
    meta["base_model_relation"] = c.relation
    meta["model_name"] = c.name
    meta["datasets"] = [c.dataset]
    meta["library_name"] = "peft" if c.relation == "adapter" else "transformers"
    meta["pipeline_tag"] = _PIPELINE[c.task]
    meta["tags"] = ["openckpt", "lora" if c.method == "lora" else "full-finetune"]
    dataset = {"type": c.dataset, "name": c.dataset, "split": "held-out", "revision": f"sha256:{c.dataset_sha256}"}
    metrics = [{"type": k, "name": k, "value": round(float(v), 6)} for k, v in sorted(c.metrics.items())]
    task = {"type": _PIPELINE[c.task], "name": c.task}
    meta["model-index"] = [{"name": c.name, "results": [{"task": task, "dataset": dataset, "metrics": metrics}]}]
    return meta


def render_card(
    c: CardFacts, *, built_with: Sequence[str] = (), obligations: Sequence[Obligation] = (), notes: Sequence[str] = ()
) -> str:
    """README.md of the fine-tune; ``obligations`` (with their status) are listed under "License"."""
    front = yaml.safe_dump(_metadata(c), sort_keys=False, allow_unicode=True)
    kind = (
        "A LoRA adapter"
        if c.relation == "adapter"
        else "A merged LoRA fine-tune"
        if c.method == "lora"
        else ("A full fine-tune")
    )
    rev = f" at revision `{c.base_revision}`" if c.base_revision else ""
    parts = [f"---\n{front}---\n", f"# {c.name}\n", f"{kind} of `{c.base_model}`{rev} for {c.task}.\n"]
    parts += [f"**{line}**\n" for line in built_with]
    rows = [
        ("method", c.method),
        ("steps", c.steps),
        ("trainable parameters", f"{c.trainable_parameters:,}"),
        ("parameters", f"{c.total_parameters:,}"),
        *((k, v) for k, v in sorted(c.hyperparameters.items())),
    ]
    parts.append("## Training\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n")
    parts.append(
        "## Dataset\n\n| file | sha256 | train rows | held-out rows |\n|---|---|---|---|\n"
        f"| {c.dataset} | {c.dataset_sha256} | {c.train_rows} | {c.eval_rows} |\n"
    )
    metric_rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(c.metrics.items()))
    parts.append(f"## Evaluation (held-out split)\n\n| metric | value |\n|---|---|\n{metric_rows}\n")
    lines = [f"This model is licensed `{c.license}`." if c.license else "No license is declared."]
    if obligations:
        lines.append("\nWhat the base's license asks of this model:\n")
        lines += [f"- [{'x' if o.status == 'met' else ' '}] {o.text} ({o.clause}; {o.status})" for o in obligations]
    lines += [f"\n{n}" for n in notes]
    parts.append("## License\n\n" + "\n".join(lines) + "\n")
    if c.environment:
        parts.append(
            "## How to reproduce\n\nThe recipe (`openckpt-recipe.json`: command, resolved options, base "
            "revision, data digests, determinism settings; installed packages in `openckpt-packages.txt`) "
            "re-runs with `openckpt reproduce <this repo or directory>`, and `--steps N` checks the first N "
            f"steps only.\n\nRecorded environment: {c.environment}.\n"
        )
    parts.append("Fine-tuned with `openckpt finetune`.\n")
    return "\n".join(parts)
