"""README.md front matter: the repo metadata the hub derives from it. Parsing and validation live in
:mod:`openckpt.governance.cards` (shared with the CLI); they are re-exported here for the hub's routes."""

from __future__ import annotations

from typing import Any

from openckpt.governance.cards import CardProblems, split_front_matter, validate_card

__all__ = ["CardProblems", "derive_metadata", "split_front_matter", "validate_card"]


def derive_metadata(card: dict[str, Any], filenames: list[str]) -> tuple[list[str], str | None, str | None]:
    """(tags, pipeline_tag, library_name) as the Hub derives them from the card and the files."""
    tags = card.get("tags") or []
    tags = [tags] if isinstance(tags, str) else [str(t) for t in tags]
    library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
    if library is None and "config.json" in filenames:
        library = "transformers" if any(f.endswith(".safetensors") or f.endswith(".bin") for f in filenames) else None
    extra = []
    if library:
        extra.append(library)
    if any(f.endswith(".safetensors") for f in filenames):
        extra.append("safetensors")
    if "openckpt.json" in filenames:
        extra.append("openckpt")
    if isinstance(card.get("license"), str):
        extra.append(f"license:{card['license']}")
    for base in [card["base_model"]] if isinstance(card.get("base_model"), str) else card.get("base_model") or []:
        extra.append(f"base_model:{base}")
    pipeline = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else None
    merged = list(dict.fromkeys([*tags, *extra]))
    return merged, pipeline, library
