"""Model cards: the YAML front matter of README.md, parsed and validated per the Hugging Face Hub's conventions.

The one place that knows the card's fields: the hub's ``/api/validate-yaml`` and ``openckpt card lint`` both call
:func:`validate_card`; :func:`gate_fields` reads the gated-access form (:func:`set_gate_form` writes it) and
:func:`eval_results` the evaluation results of ``model-index``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from openckpt.errors import FormatError
from openckpt.governance.licenses import hub_license_ids

__all__ = [
    "GATE_FIELD_TYPES",
    "HF_LICENSES",
    "RELATIONS",
    "CardProblems",
    "EvalResult",
    "GateField",
    "eval_results",
    "gate_fields",
    "generate_card",
    "parse_card",
    "set_gate_form",
    "split_front_matter",
    "validate_card",
]

CardProblems = tuple[list[str], list[str]]

HF_LICENSES = frozenset(hub_license_ids())
"""License ids the Hugging Face Hub accepts in a card's ``license:`` field."""

RELATIONS = ("adapter", "merge", "quantized", "finetune")
GATE_FIELD_TYPES = ("text", "checkbox", "date_picker", "country", "select")
_GATE_TEXT = ("extra_gated_prompt", "extra_gated_heading", "extra_gated_description", "extra_gated_button_content")
_STR = ("license_name", "license_link", "library_name", "pipeline_tag", "model_name", *_GATE_TEXT)
_LIST_OF_STR = ("tags", "datasets", "language", "metrics")
_REPO_ID = re.compile(r"^(?:[\w.\-]+/)?[\w.\-]+$")


@dataclass(frozen=True)
class GateField:
    """One input of a gated repo's access form."""

    name: str
    type: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalResult:
    """One metric of ``model-index``, flattened as ``huggingface_hub.EvalResult`` holds it."""

    model_name: str
    task_type: str
    dataset_type: str
    dataset_name: str
    metric_type: str
    metric_value: Any
    task_name: str | None = None
    dataset_split: str | None = None
    metric_name: str | None = None
    source_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


def parse_card(text: str) -> tuple[dict[str, Any] | None, str, list[str]]:
    """(front matter mapping or None when absent or empty, markdown body, errors of the YAML itself)."""
    raw, body = split_front_matter(text)
    if raw is None:
        return None, body, []
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        return None, body, [f"invalid YAML in the metadata block: {e}"]
    if data is None:
        return None, body, []
    if not isinstance(data, dict):
        return None, body, ["the metadata block must be a YAML mapping (key: value)"]
    return data, body, []


def _is_str_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _check_license(data: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    if "license" not in data:
        warnings.append('no "license" field')
        return
    value = data["license"]
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        errors.append('"license" must be a license id (or a list of them)')
        return
    for lic in values:
        if lic.lower() not in HF_LICENSES:
            errors.append(
                f'"license" {lic!r} is not a license id the Hub knows: use one of its ids, or "other" '
                "with license_name and license_link"
            )
    if "other" in values:
        for key in ("license_name", "license_link"):
            if key not in data:
                warnings.append(f'"license: other" should come with "{key}"')


def _check_model_index(value: Any, errors: list[str]) -> None:
    if not isinstance(value, list):
        errors.append('"model-index" must be a list')
        return
    for i, model in enumerate(value):
        where = f"model-index[{i}]"
        if not isinstance(model, dict):
            errors.append(f"{where} must be a mapping with name and results")
            continue
        if not isinstance(model.get("name"), str) or not model["name"]:
            errors.append(f"{where}.name is required (the model's name)")
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f"{where}.results must be a list")
            continue
        for j, result in enumerate(results):
            _check_result(result, f"{where}.results[{j}]", errors)


def _require_str(mapping: Any, key: str, where: str, errors: list[str], *, required: bool = True) -> None:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if value is None:
        if required:
            errors.append(f"{where}.{key} is required")
    elif not isinstance(value, str | int | float) or isinstance(value, bool):
        errors.append(f"{where}.{key} must be a string")


def _check_result(result: Any, where: str, errors: list[str]) -> None:
    if not isinstance(result, dict):
        errors.append(f"{where} must be a mapping with task, dataset and metrics")
        return
    for part, required, optional in (
        ("task", ("type",), ("name",)),
        ("dataset", ("type", "name"), ("config", "split", "revision")),
    ):
        value = result.get(part)
        if not isinstance(value, dict):
            errors.append(f"{where}.{part} must be a mapping with {' and '.join(required)}")
            continue
        for key in required:
            _require_str(value, key, f"{where}.{part}", errors)
        for key in optional:
            _require_str(value, key, f"{where}.{part}", errors, required=False)
    metrics = result.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        errors.append(f"{where}.metrics must be a non-empty list")
    else:
        for k, metric in enumerate(metrics):
            at = f"{where}.metrics[{k}]"
            if not isinstance(metric, dict):
                errors.append(f"{at} must be a mapping with type and value")
                continue
            _require_str(metric, "type", at, errors)
            _require_str(metric, "name", at, errors, required=False)
            if "value" not in metric or metric["value"] is None:
                errors.append(f"{at}.value is required")
            elif isinstance(metric["value"], dict | list):
                errors.append(f"{at}.value must be a number or a string")
    source = result.get("source")
    if source is not None and not (isinstance(source, dict) and isinstance(source.get("url"), str)):
        errors.append(f"{where}.source must be a mapping with a url")


def _check_gate(data: dict[str, Any], errors: list[str]) -> None:
    fields = data.get("extra_gated_fields")
    if fields is None:
        return
    if not isinstance(fields, dict):
        errors.append('"extra_gated_fields" must be a mapping of field label to type')
        return
    for name, spec in fields.items():
        kind = spec.get("type") if isinstance(spec, dict) else spec
        if kind not in GATE_FIELD_TYPES:
            errors.append(f'"extra_gated_fields" {name!r}: type must be one of {", ".join(GATE_FIELD_TYPES)}')
        elif kind == "select":
            options = spec.get("options") if isinstance(spec, dict) else None
            if not isinstance(options, list) or not options:
                errors.append(f'"extra_gated_fields" {name!r}: a select needs a non-empty "options" list')


def validate_card(text: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """(metadata, errors, warnings) of a model card; metadata is empty when there are errors."""
    data, _, errors = parse_card(text)
    if errors:
        return {}, errors, []
    if data is None:
        raw, _ = split_front_matter(text)
        return {}, [], ["no YAML metadata block at the top of README.md" if raw is None else "empty metadata block"]
    warnings: list[str] = []
    _check_license(data, errors, warnings)
    _check_types(data, errors)
    _check_base(data, errors, warnings)
    if "model-index" in data:
        _check_model_index(data["model-index"], errors)
    _check_gate(data, errors)
    return ({} if errors else data), errors, warnings


def _check_types(data: dict[str, Any], errors: list[str]) -> None:
    """The keys that must be strings, and those that must be a string or a list of strings."""
    for key in _STR:
        if key in data and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    for key in _LIST_OF_STR:
        if data.get(key) is not None and not _is_str_list(data[key]):
            errors.append(f'"{key}" must be a string or a list of strings')


def _check_base(data: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    """``base_model`` (repo ids) and ``base_model_relation`` (one of :data:`RELATIONS`, with a base model)."""
    base = data.get("base_model")
    if base is not None:
        if not _is_str_list(base):
            errors.append('"base_model" must be a repo id or a list of repo ids')
        else:
            for b in [base] if isinstance(base, str) else base:
                if not _REPO_ID.match(b):
                    warnings.append(f'"base_model" {b!r} does not look like a repo id (owner/name)')
            if isinstance(base, list) and len(base) > 1 and data.get("base_model_relation") != "merge":
                warnings.append('several "base_model"s usually mean "base_model_relation: merge"')
    relation = data.get("base_model_relation")
    if relation is not None:
        if relation not in RELATIONS:
            errors.append(f'"base_model_relation" must be one of {", ".join(RELATIONS)}')
        elif base is None:
            warnings.append('"base_model_relation" without "base_model"')


def gate_fields(card: dict[str, Any]) -> list[GateField]:
    """The inputs of the access form of a gated repo, from ``extra_gated_fields`` (invalid entries skipped)."""
    fields = card.get("extra_gated_fields")
    if not isinstance(fields, dict):
        return []
    out = []
    for name, spec in fields.items():
        kind = spec.get("type") if isinstance(spec, dict) else spec
        if kind not in GATE_FIELD_TYPES:
            continue
        options: tuple[str, ...] = ()
        if kind == "select":
            raw = spec.get("options") if isinstance(spec, dict) else None
            options = tuple(
                str(o.get("label", o.get("value")) if isinstance(o, dict) else o) for o in raw or [] if o is not None
            )
        out.append(GateField(str(name), str(kind), options))
    return out


def set_gate_form(text: str | None, fields: list[GateField], *, heading: str = "", prompt: str = "") -> str:
    """``text`` (a README.md, or None for none yet) with its access form set: ``extra_gated_fields`` in the Hub's
    spelling (a type, or ``{type: select, options: [...]}``), ``extra_gated_heading`` and ``extra_gated_prompt``
    (left out when empty). Other metadata and the body are kept."""
    meta, body, errors = parse_card(text or "")
    if errors:
        raise FormatError(f"README.md: {errors[0]}; fix the card's metadata first")
    meta = dict(meta or {})
    spec: dict[str, Any] = {}
    for f in fields:
        if f.type not in GATE_FIELD_TYPES:
            raise FormatError(f"field {f.name!r}: the type must be one of {', '.join(GATE_FIELD_TYPES)}")
        if f.type == "select" and not f.options:
            raise FormatError(f"field {f.name!r}: a select needs at least one option")
        spec[f.name] = {"type": "select", "options": list(f.options)} if f.type == "select" else f.type
    for key, value in (("extra_gated_fields", spec), ("extra_gated_heading", heading), ("extra_gated_prompt", prompt)):
        if value:
            meta[key] = value
        else:
            meta.pop(key, None)
    if not meta:
        return body
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{body if body.startswith(chr(10)) or not body else chr(10) + body}"


def eval_results(card: dict[str, Any]) -> list[EvalResult]:
    """Every metric of a well-formed ``model-index`` (malformed entries are skipped)."""
    out: list[EvalResult] = []
    index = card.get("model-index")
    for model in index if isinstance(index, list) else []:
        if not isinstance(model, dict):
            continue
        for result in model.get("results") or []:
            if not isinstance(result, dict):
                continue
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            source = result.get("source") if isinstance(result.get("source"), dict) else {}
            for metric in result.get("metrics") or []:
                if not isinstance(metric, dict) or "type" not in metric or "value" not in metric:
                    continue
                out.append(
                    EvalResult(
                        model_name=str(model.get("name", "")),
                        task_type=str(task.get("type", "")),
                        dataset_type=str(dataset.get("type", "")),
                        dataset_name=str(dataset.get("name", "")),
                        metric_type=str(metric["type"]),
                        metric_value=metric["value"],
                        task_name=task.get("name"),
                        dataset_split=dataset.get("split"),
                        metric_name=metric.get("name"),
                        source_url=source.get("url") if source else None,
                    )
                )
    return out


def generate_card(directory: Path, *, name: str | None = None) -> str:
    """The README.md of the checkpoint in ``directory``, from its ``openckpt.json`` manifest."""
    from openckpt.format.card import render_card
    from openckpt.format.manifest import read_manifest

    return render_card(read_manifest(directory), name=name or directory.resolve().name)
