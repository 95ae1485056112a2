"""Openness of a model: its class in the Linux Foundation's Model Openness Framework (MOF) and the OSI Open Source
AI Definition 1.0 check, from the repo's file list, its card metadata and the licenses of its linked datasets.

Each MOF component is ``verified`` (a file of the repo provides it), ``declared`` (the card points at it elsewhere)
or ``missing``, with the evidence. A class is awarded when every component it requires is present under a license
that is open for the component's type (code, data or document); classes are cumulative (III ⊂ II ⊂ I).
Not legal advice: a person decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from openckpt.governance.cards import eval_results
from openckpt.governance.licenses import get_license

__all__ = ["CLASSES", "Component", "Openness", "assess"]

Status = Literal["verified", "declared", "missing"]
Kind = Literal["code", "data", "document"]

_OSI_IDS = """
    apache-2.0 mit bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear isc zlib mpl-2.0 gpl gpl-2.0 gpl-3.0
    lgpl lgpl-2.1 lgpl-3.0 agpl-3.0 epl-1.0 epl-2.0 eupl-1.1 eupl-1.2 artistic-2.0 bsl-1.0 afl-3.0 ecl-2.0 ms-pl osl-3.0
    postgresql ncsa unlicense ofl-1.1 lppl-1.3c"""
_OSI = frozenset(_OSI_IDS.split())
"""OSI-approved (or FSF-libre) licenses among the Hub's ids: open for code, and for parameters under the OSAID."""
_OPEN_DATA_IDS = """
    cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cdla-sharing-1.0
    cdla-permissive-1.0 cdla-permissive-2.0 odc-by odbl pddl etalab-2.0 openmdw-1.0 openmdw-1.1"""
_OPEN_DATA = frozenset(_OPEN_DATA_IDS.split())
"""Open-data licenses (and OpenMDW): open for data and parameters."""
_OPEN = {"code": _OSI, "data": _OSI | _OPEN_DATA, "document": _OSI | _OPEN_DATA | {"gfdl"}}


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: Kind
    mof_class: int
    patterns: tuple[str, ...]


_SPECS = (
    _Spec("Model architecture", "code", 3, (r"(^|/)config\.json$", r"(^|/)modeling_\w+\.py$", r"(^|/)openckpt\.json$")),
    _Spec("Final model parameters", "data", 3, (r"\.(safetensors|bin|pt|pth|ckpt|gguf|onnx|h5|msgpack|npz)$",)),
    _Spec("Technical report", "document", 3, (r"(^|/)[^/]*(technical[_-]?report|tech[_-]?report)[^/]*\.(pdf|md)$",)),
    _Spec("Evaluation results", "document", 3, (r"(^|/)(eval|evaluation)[^/]*results?[^/]*\.(json|csv|md)$",)),
    _Spec("Model card", "document", 3, (r"^README\.md$",)),
    _Spec("Data card", "document", 3, (r"(^|/)(data[_-]?card|datasheet)[^/]*\.md$",)),
    _Spec("Training code", "code", 2, (r"(^|/)train[^/]*\.(py|sh)$", r"(^|/)training/[^/]+\.py$")),
    _Spec("Inference code", "code", 2, (r"(^|/)(inference|generate|predict|run)[^/]*\.py$", r"(^|/)modeling_\w+\.py$")),
    _Spec("Evaluation code", "code", 2, (r"(^|/)eval[^/]*\.(py|sh)$", r"(^|/)evaluation/[^/]+\.py$")),
    _Spec("Evaluation data", "data", 2, (r"(^|/)(eval|evaluation|test)[_-]?(data|set)/", r"(^|/)eval[^/]*\.jsonl$")),
    _Spec("Datasets", "data", 1, (r"(^|/)(data|dataset|datasets)/[^/]+\.(jsonl|parquet|csv|arrow|txt)$",)),
    _Spec("Data preprocessing code", "code", 1, (r"(^|/)(preprocess|prepare|tokeni[sz]e)[^/]*\.py$",)),
    _Spec("Intermediate model parameters", "data", 1, (r"(^|/)(checkpoint|step|ckpt)[-_]?\d+/",)),
    _Spec("Research paper", "document", 1, (r"(^|/)[^/]*paper[^/]*\.pdf$",)),
)
CLASSES = {3: "Class III: Open Model", 2: "Class II: Open Tooling", 1: "Class I: Open Science"}


@dataclass(frozen=True)
class Component:
    name: str
    kind: Kind
    mof_class: int
    status: Status
    evidence: list[str]
    license: str | None
    open_license: bool


@dataclass(frozen=True)
class Openness:
    mof_class: int | None
    """3, 2 or 1 (1 is the most open); None when not even Class III is met."""
    mof_label: str
    components: list[Component]
    osaid: bool
    osaid_reasons: list[str] = field(default_factory=list)
    license: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ids(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _declared(name: str, card: Mapping[str, Any], dataset_licenses: Mapping[str, str | None]) -> list[str]:
    """What the card says about a component, as evidence strings."""
    tags = _ids(card.get("tags"))
    papers = [t for t in tags if t.startswith("arxiv:")]
    datasets = _ids(card.get("datasets"))
    results = eval_results(dict(card))
    if name == "Model card":
        return ["README.md front matter"] if card else []
    if name in ("Technical report", "Research paper"):
        return [f"card tag {p}" for p in papers]
    if name == "Evaluation results":
        return [f"model-index: {len(results)} metric(s)"] if results else []
    if name == "Evaluation data":
        return sorted({f"model-index dataset {r.dataset_type}" for r in results})
    if name == "Datasets":
        return [f"card dataset {d}" for d in datasets]
    if name == "Data card":
        return [f"card dataset {d}" for d in datasets if d in dataset_licenses]
    if name == "Inference code" and isinstance(card.get("library_name"), str):
        return [f"library_name {card['library_name']}"]
    return []


def assess(
    files: Iterable[str],
    card: Mapping[str, Any],
    *,
    dataset_licenses: Mapping[str, str | None] | None = None,
) -> Openness:
    """The openness of a repo or checkpoint directory: ``files`` are its paths, ``card`` its README front matter,
    ``dataset_licenses`` the license ids of the datasets the card links (when known)."""
    paths = sorted(set(files))
    dataset_licenses = dict(dataset_licenses or {})
    license_ids = [i.lower() for i in _ids(card.get("license"))]
    repo_license = license_ids[0] if license_ids else None
    components = []
    for spec in _SPECS:
        found = [p for p in paths if any(re.search(pat, p) for pat in spec.patterns)][:5]
        declared = _declared(spec.name, card, dataset_licenses)
        status: Status = "verified" if found else ("declared" if declared else "missing")
        lic = repo_license
        if spec.name in ("Datasets", "Evaluation data", "Data card") and status == "declared":
            known = [dataset_licenses.get(d) for d in _ids(card.get("datasets"))]
            lic = known[0] if known and all(k and k == known[0] for k in known) else None
        open_license = bool(lic) and lic in _OPEN[spec.kind]
        components.append(Component(spec.name, spec.kind, spec.mof_class, status, found + declared, lic, open_license))
    awarded = None
    for level in (3, 2, 1):
        required = [c for c in components if c.mof_class >= level]
        if all(c.status != "missing" and c.open_license for c in required):
            awarded = level
        else:
            break
    reasons = _osaid_reasons(components, license_ids)
    label = CLASSES[awarded] if awarded else "not classified: Class III needs every component under an open license"
    return Openness(awarded, label, components, not reasons, reasons, repo_license)


def _osaid_reasons(components: list[Component], license_ids: list[str]) -> list[str]:
    """Why the OSI Open Source AI Definition 1.0 is not met (empty: it is)."""
    reasons = []
    if not license_ids:
        reasons.append("no license: the freedoms to use, study, modify and share are not granted")
    for lic in license_ids:
        info = get_license(lic)
        if info is not None and info.use_restrictions:
            reasons.append(f"{lic} restricts uses: the OSAID requires freedom to use for any purpose")
        elif info is not None and (info.commercial is False or info.research_only):
            reasons.append(f"{lic} forbids commercial use: the OSAID requires freedom to use for any purpose")
        elif lic not in _OSI and lic not in _OPEN_DATA:
            reasons.append(f"{lic} is not OSI-approved terms for the parameters")
    by_name = {c.name: c for c in components}
    for name in ("Final model parameters", "Training code", "Inference code", "Data preprocessing code"):
        if by_name[name].status == "missing":
            reasons.append(f"{name.lower()} missing: the OSAID requires the complete code and the parameters")
    if by_name["Datasets"].status == "missing":
        reasons.append("no data information: the OSAID requires a complete description of the training data")
    return reasons
