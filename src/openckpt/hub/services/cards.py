"""README.md front matter: parsing, validation, and the repo metadata derived from it."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["CardProblems", "derive_metadata", "split_front_matter", "validate_card"]

CardProblems = tuple[list[str], list[str]]

_LIST_OF_STR = ("tags", "datasets", "language", "metrics")
_STR = ("license", "license_name", "license_link", "library_name", "pipeline_tag", "base_model_relation")


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(YAML text or None, markdown body)."""
    if not text.startswith("---"):
        return None, text
    lines = text.splitlines(keepends=True)
    if lines[0].strip() != "---":
        return None, text
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    return None, text


def validate_card(text: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """(metadata, errors, warnings) of a model card; metadata is empty when there are errors."""
    raw, _ = split_front_matter(text)
    if raw is None:
        return {}, [], ["no YAML metadata block at the top of README.md"]
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        return {}, [f"invalid YAML in the metadata block: {e}"], []
    if data is None:
        return {}, [], ["empty metadata block"]
    if not isinstance(data, dict):
        return {}, ["the metadata block must be a YAML mapping (key: value)"], []
    errors: list[str] = []
    for key in _STR:
        if key in data and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    for key in _LIST_OF_STR:
        value = data.get(key)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or a list of strings')
    base = data.get("base_model")
    if base is not None and not (
        isinstance(base, str) or (isinstance(base, list) and all(isinstance(b, str) for b in base))
    ):
        errors.append('"base_model" must be a repo id or a list of repo ids')
    if "model-index" in data and not isinstance(data["model-index"], list):
        errors.append('"model-index" must be a list')
    warnings = [] if "license" in data else ['no "license" field']
    return ({} if errors else data), errors, warnings


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
