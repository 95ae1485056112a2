"""Lineage: which base models a repo revision derives from, and how, read from its files.

Three sources, first one wins for the relation: the card's ``base_model`` (one id, or a list for merges) and
``base_model_relation``; an openckpt manifest's ``lineage`` (``base_model``, ``base_model_revision``, ``relation``);
PEFT's ``adapter_config.json`` (``base_model_name_or_path`` and ``revision``, relation ``adapter``). Without a
stated relation it is inferred as the Hub does: ``adapter`` with an adapter config, ``merge`` with several bases,
``quantized`` with GGUF files, else ``finetune``. Base ids are kept as written: ids of other hubs stay external ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["RELATIONS", "Edge", "card_metadata", "extract_edges", "split_front_matter"]

RELATIONS = ("finetune", "adapter", "merge", "quantized")


@dataclass(frozen=True)
class Edge:
    """``base`` is a parent of the repo: a repo id (``owner/name``) or an external id (a URL of another hub)."""

    base: str
    relation: str
    revision: str | None = None
    source: str = "card"  # card | manifest | adapter_config

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "relation": self.relation, "revision": self.revision, "source": self.source}


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(YAML text of the ``---`` block at the top, or None; the markdown after it)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None, text
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None, text


def card_metadata(text: str) -> dict[str, Any]:
    """The metadata of a model card's front matter; empty when there is none or it is not a YAML mapping."""
    raw, _ = split_front_matter(text)
    if raw is None:
        return {}
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _ids(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [s.strip().rstrip("/") for s in items if isinstance(s, str) and s.strip()]


def _json(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def extract_edges(files: Mapping[str, bytes], *, paths: list[str] | None = None) -> list[Edge]:
    """The base models of a revision, from the contents of its ``README.md``, ``openckpt.json`` and
    ``adapter_config.json`` (other files of ``files`` are ignored); ``paths`` lists every file of the revision
    (for the inferred relation), default the keys of ``files``."""
    paths = list(files) if paths is None else paths
    readme = files.get("README.md")
    card = card_metadata(readme.decode("utf-8", errors="replace")) if readme is not None else {}
    lineage = _json(files.get("openckpt.json")).get("lineage")
    lineage = lineage if isinstance(lineage, dict) else {}
    adapter = _json(files.get("adapter_config.json"))

    found: dict[str, tuple[str | None, str | None, str]] = {}  # base → (stated relation, revision, source)
    stated = card.get("base_model_relation") if card.get("base_model_relation") in RELATIONS else None
    for base in _ids(card.get("base_model")):
        found.setdefault(base, (stated, None, "card"))
    manifest_relation = lineage.get("relation") if lineage.get("relation") in RELATIONS else None
    revision = lineage.get("base_model_revision") if isinstance(lineage.get("base_model_revision"), str) else None
    for base in _ids(lineage.get("base_model")):
        prior = found.get(base)
        found[base] = (
            (prior[0] or manifest_relation, revision, prior[2]) if prior else (manifest_relation, revision, "manifest")
        )
    for base in _ids(adapter.get("base_model_name_or_path")):
        rev = adapter.get("revision") if isinstance(adapter.get("revision"), str) else None
        prior = found.get(base)
        found[base] = (
            (prior[0] or "adapter", prior[1] or rev, prior[2]) if prior else ("adapter", rev, "adapter_config")
        )

    if "adapter_config.json" in paths and adapter:
        default = "adapter"
    elif len(found) > 1:
        default = "merge"
    elif any(p.lower().endswith(".gguf") for p in paths):
        default = "quantized"
    else:
        default = "finetune"
    return [Edge(base, relation or default, rev, source) for base, (relation, rev, source) in found.items()]
