"""Model cards: a README.md whose YAML front matter follows the Hugging Face Hub's conventions."""

from __future__ import annotations

from typing import Any

import yaml

from openckpt.format.manifest import Manifest

__all__ = ["card_metadata", "render_card"]


def card_metadata(manifest: Manifest, *, name: str) -> dict[str, Any]:
    """Card YAML from a manifest: license, base_model (+ relation), datasets, library_name, model-index."""
    meta: dict[str, Any] = {}
    lineage, training = manifest.lineage, manifest.training
    if lineage.license:
        meta["license"] = lineage.license
    if lineage.base_model:
        meta["base_model"] = lineage.base_model
        if lineage.relation:
            meta["base_model_relation"] = lineage.relation
    if training.datasets:
        meta["datasets"] = [d.name for d in training.datasets]
    config = manifest.architecture.config if manifest.architecture else None
    if config and config.get("model_type"):
        meta["library_name"] = "transformers"
    meta["tags"] = ["openckpt"]
    if training.metrics:
        dataset = training.datasets[0].name if training.datasets else "training data"
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "other", "name": "training"},
                        "dataset": {"type": dataset, "name": dataset},
                        "metrics": [{"type": k, "name": k, "value": v} for k, v in sorted(training.metrics.items())],
                    }
                ],
            }
        ]
    return meta


def _counted(value: int | None, step: int | None) -> int | None:
    """A counter the loop kept: 0 after steps were taken means it was never counted, so it is not shown."""
    return None if value == 0 and step else value


def _training_lines(manifest: Manifest) -> list[str]:
    t = manifest.training
    code = f"{t.git_commit}{' (dirty)' if t.git_dirty else ''}" if t.git_commit else None
    rows = [
        ("Checkpoint id", manifest.id),
        ("Step", t.step),
        ("Epoch", t.epoch),
        ("Samples seen", _counted(t.samples_seen, t.step)),
        ("Tokens seen", _counted(t.tokens_seen, t.step)),
        ("Seed", t.seed),
        ("Training code", code),
    ]
    lines = [f"| {k} | {v} |" for k, v in rows if v is not None]
    return ["| | |", "|---|---|", *lines] if lines else []


def render_card(manifest: Manifest, *, name: str) -> str:
    """The complete README.md for an exported checkpoint."""
    meta = yaml.safe_dump(card_metadata(manifest, name=name), sort_keys=False, allow_unicode=True)
    arch = manifest.architecture
    parts = [f"---\n{meta}---\n", f"# {name}\n"]
    if manifest.lineage.base_model:
        bases = manifest.lineage.base_model
        base_list = bases if isinstance(bases, list) else [bases]
        rev = f" at revision `{manifest.lineage.base_model_revision}`" if manifest.lineage.base_model_revision else ""
        relation = manifest.lineage.relation or "derivative"
        parts.append(f"A {relation} of {', '.join(f'`{b}`' for b in base_list)}{rev}.\n")
    if arch and arch.parameters:
        parts.append(f"**Architecture:** `{arch.class_path}`, {arch.parameters:,} parameters.\n")
    if lines := _training_lines(manifest):
        parts.append("## Training\n\n" + "\n".join(lines) + "\n")
    if manifest.training.datasets:
        rows = [f"| {d.name} | {d.revision or ''} | {d.digest or ''} |" for d in manifest.training.datasets]
        parts.append("## Datasets\n\n| name | revision | digest |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    if manifest.training.metrics:
        rows = [f"| {k} | {v:.6g} |" for k, v in sorted(manifest.training.metrics.items())]
        parts.append("## Metrics\n\n| metric | value |\n|---|---|\n" + "\n".join(rows) + "\n")
    parts.append("Exported with openckpt; `openckpt.json` lists every file's sha256 and blake3.\n")
    return "\n".join(parts)
