"""AI bill of materials: a CycloneDX 1.6 ML-BOM of a model, from its files' sha256s, card metadata and manifest.

The model is a ``machine-learning-model`` component with the sha256 of each weight file and its license; its
``modelCard`` carries the parameters (architecture, datasets) and the ``model-index`` metrics; datasets are ``data``
components, base models ``machine-learning-model`` components, and the manifest's ``software`` versions
``library`` components; the ``dependencies`` graph links the model to all of them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openckpt.format.manifest import Manifest, Recipe
from openckpt.governance.cards import eval_results, parse_card
from openckpt.governance.licenses import get_license

__all__ = ["WEIGHT_SUFFIXES", "bom_of_directory", "build_bom", "is_weight_file"]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack", ".npz", ".pkl")
_PYPI_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_weight_file(path: str) -> bool:
    return path.lower().endswith(WEIGHT_SUFFIXES)


def _ids(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _licenses(ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for lic in ids:
        info = get_license(lic)
        if info is not None and info.spdx:
            entry: dict[str, Any] = {"id": info.spdx}
        else:
            entry = {"name": info.name if info is not None else lic}
        if info is not None and info.url:
            entry["url"] = info.url
        out.append({"license": entry})
    return out


def build_bom(
    name: str,
    *,
    weights: Mapping[str, str],
    card: Mapping[str, Any],
    manifest: Manifest | None = None,
    version: str | None = None,
    tool_version: str = "",
    timestamp: datetime | None = None,
    recipe: Recipe | None = None,
) -> dict[str, Any]:
    """The ML-BOM of model ``name``: ``weights`` maps each weight file's path to its sha256 (hex). The training
    recipe (``recipe``, else the manifest's) adds its data files (with their sha256) and ``openckpt:recipe:*``
    properties: entry point, command, packages digest, torch build and device, determinism flags, git commit."""
    model_ref = f"model:{name}"
    license_ids = _ids(card.get("license")) or (
        [manifest.lineage.license] if manifest and manifest.lineage.license else []
    )
    datasets = list(
        dict.fromkeys(_ids(card.get("datasets")) + ([d.name for d in manifest.training.datasets] if manifest else []))
    )
    components = [_dataset(ds) for ds in datasets] + _bases(card, manifest) + _libraries(manifest)
    arch = manifest.architecture if manifest else None
    model: dict[str, Any] = {"type": "machine-learning-model", "bom-ref": model_ref, "name": name}
    if version:
        model["version"] = version
    if weights:
        model["hashes"] = [{"alg": "SHA-256", "content": sha} for sha in dict.fromkeys(weights.values())]
        model["components"] = [
            {
                "type": "file",
                "bom-ref": f"{model_ref}/{path}",
                "name": path,
                "hashes": [{"alg": "SHA-256", "content": sha}],
            }
            for path, sha in sorted(weights.items())
        ]
    if license_ids:
        model["licenses"] = _licenses(license_ids)
    if model_card := _model_card(card, manifest, datasets):
        model["modelCard"] = model_card
    if arch and arch.parameters:
        model["properties"] = [{"name": "openckpt:parameters", "value": str(arch.parameters)}]
    recipe = recipe or (manifest.recipe if manifest else None)
    if recipe is not None:
        model.setdefault("properties", []).extend(_recipe_properties(recipe))
        _hash_recipe_data(components, recipe)

    depends = [c["bom-ref"] for c in components]
    moment = (timestamp or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tool: dict[str, Any] = {"type": "application", "name": "openckpt"}
    if tool_version:
        tool["version"] = tool_version
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {"timestamp": moment, "tools": {"components": [tool]}, "component": model},
        "components": components,
        "dependencies": [{"ref": model_ref, "dependsOn": depends}] + [{"ref": r} for r in depends],
    }


def _dataset(name: str) -> dict[str, Any]:
    """The ``data`` component of dataset ``name``."""
    return {"type": "data", "bom-ref": f"dataset:{name}", "name": name, "data": [{"type": "dataset", "name": name}]}


def _bases(card: Mapping[str, Any], manifest: Manifest | None) -> list[dict[str, Any]]:
    """A component per base model: the card's ``base_model``, else the manifest's lineage."""
    bases = _ids(card.get("base_model")) or (_ids(manifest.lineage.base_model) if manifest else [])
    return [{"type": "machine-learning-model", "bom-ref": f"model:{base}", "name": base} for base in bases]


def _libraries(manifest: Manifest | None) -> list[dict[str, Any]]:
    """A component per software version the manifest records, with a PyPI purl where the name is one."""
    out: list[dict[str, Any]] = []
    for lib, lib_version in sorted((manifest.software if manifest else {}).items()):
        ref = f"library:{lib}@{lib_version}"
        component: dict[str, Any] = {"type": "library", "bom-ref": ref, "name": lib, "version": lib_version}
        if lib != "python" and _PYPI_NAME.match(lib):
            component["purl"] = f"pkg:pypi/{lib.lower()}@{lib_version}"
        out.append(component)
    return out


def _model_card(card: Mapping[str, Any], manifest: Manifest | None, datasets: list[str]) -> dict[str, Any]:
    """CycloneDX ``modelCard``: task, architecture and datasets; the card's eval results, else training metrics."""
    parameters: dict[str, Any] = {}
    if isinstance(card.get("pipeline_tag"), str):
        parameters["task"] = card["pipeline_tag"]
    arch = manifest.architecture if manifest else None
    config = (arch.config or {}) if arch else {}
    if isinstance(config.get("model_type"), str):
        parameters["architectureFamily"] = config["model_type"]
    if arch and arch.class_path:
        parameters["modelArchitecture"] = arch.class_path
    if datasets:
        parameters["datasets"] = [{"ref": f"dataset:{d}"} for d in datasets]
    model_card: dict[str, Any] = {"modelParameters": parameters} if parameters else {}
    metrics = [
        {"type": r.metric_type, "value": str(r.metric_value), "slice": f"{r.dataset_name} ({r.task_type})"}
        for r in eval_results(dict(card))
    ]
    if not metrics and manifest:
        metrics = [
            {"type": k, "value": str(v), "slice": "training"} for k, v in sorted(manifest.training.metrics.items())
        ]
    if metrics:
        model_card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    return model_card


def _hash_recipe_data(components: list[dict[str, Any]], recipe: Recipe) -> None:
    """Give each data file of ``recipe`` with a sha256 its hash, adding a dataset component when it has none."""
    listed = {c["bom-ref"]: c for c in components}
    for d in (d for d in recipe.data if d.sha256):
        ref = f"dataset:{d.name}"
        if ref not in listed:
            listed[ref] = _dataset(d.name)
            components.append(listed[ref])
        listed[ref]["hashes"] = [{"alg": "SHA-256", "content": d.sha256}]


def _recipe_properties(recipe: Recipe) -> list[dict[str, str]]:
    values: dict[str, Any] = {
        "entry_point": recipe.entry_point,
        "command": " ".join(recipe.command) or None,
        "python": recipe.python,
        "packages_sha256": recipe.packages_sha256,
        "torch": recipe.torch.get("version"),
        "device": ", ".join([str(recipe.torch.get("device") or ""), *map(str, recipe.torch.get("devices", []))]),
        "determinism": ", ".join(f"{k}={v}" for k, v in sorted(recipe.determinism.items())) or None,
        "seeds": ", ".join(f"{k}={v}" for k, v in sorted(recipe.seeds.items())) or None,
        "git_commit": recipe.git_commit,
        "git_diff_sha256": recipe.git_diff_sha256,
    }
    return [{"name": f"openckpt:recipe:{k}", "value": str(v)} for k, v in values.items() if v]


def bom_of_directory(directory: Path, *, tool_version: str = "") -> dict[str, Any]:
    """The ML-BOM of a checkpoint or model directory (its README.md card and ``openckpt.json`` when present)."""
    from openckpt.digest import sha256_file
    from openckpt.format.manifest import read_manifest

    directory = Path(directory)
    manifest = read_manifest(directory) if (directory / "openckpt.json").is_file() else None
    readme = directory / "README.md"
    card = parse_card(readme.read_text("utf-8", errors="replace"))[0] if readme.is_file() else None
    recorded = manifest.files if manifest else {}
    weights: dict[str, str] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if is_weight_file(rel):
            known = recorded[rel].sha256 if rel in recorded else None  # None until a training save is sealed
            weights[rel] = known or sha256_file(path)
    recipe_file = directory / "openckpt-recipe.json"  # an openckpt finetune output's
    recipe = Recipe.model_validate_json(recipe_file.read_bytes()) if recipe_file.is_file() else None
    return build_bom(
        directory.resolve().name,
        weights=weights,
        card=card or {},
        manifest=manifest,
        version=manifest.id if manifest else None,
        tool_version=tool_version,
        recipe=recipe,
    )
