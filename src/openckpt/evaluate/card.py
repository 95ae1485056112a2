"""Bias results in a model card: ``model-index`` entries and a "Bias, Risks, and Limitations" section.

Re-running a suite replaces its own results, nothing else: its ``model-index`` result (same task, dataset and bias
metrics) and its block in the section, which sits between ``<!-- openckpt-bias:SUITE -->`` markers so the text people
wrote around it is kept. :func:`bias_results` reads the results back, for the hub's repo page, and
:func:`backdoor_results` the backdoor scans among them, for its security panel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from openckpt.errors import FormatError
from openckpt.evaluate.report import BIAS_METRIC_TYPES, BiasReport
from openckpt.governance.card_sections import put_block
from openckpt.governance.cards import parse_card

__all__ = ["SECTION_TITLE", "BackdoorResult", "BiasResult", "backdoor_results", "bias_results", "update_card"]

SECTION_TITLE = "Bias, Risks, and Limitations"


@dataclass(frozen=True)
class BiasResult:
    """One bias result of a card's ``model-index``, as the hub's repo page shows it."""

    title: str
    dataset: str
    metrics: list[tuple[str, Any]]
    """(metric name, value) in card order."""


@dataclass(frozen=True)
class BackdoorResult:
    """A backdoor scan recorded in a card: ``suspected`` is None for a probe, which gives no verdict."""

    title: str
    dataset: str
    suspected: bool | None
    score: tuple[str, Any] | None
    """The strongest score (metric name, value), as the scan reported it."""


def _is_bias(result: Any) -> bool:
    metrics = result.get("metrics") if isinstance(result, dict) else None
    return isinstance(metrics, list) and any(
        isinstance(m, dict) and m.get("type") in BIAS_METRIC_TYPES for m in metrics
    )


def _same(result: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``result`` is an earlier run of the suite that produced ``new``."""
    task, dataset = result.get("task") or {}, result.get("dataset") or {}
    return (
        _is_bias(result)
        and isinstance(task, dict)
        and isinstance(dataset, dict)
        and task.get("type") == new["task"]["type"]
        and dataset.get("type") == new["dataset"]["type"]
        and dataset.get("name") == new["dataset"]["name"]
    )


def _merge_index(meta: dict[str, Any], report: BiasReport, model_name: str) -> None:
    index = meta.get("model-index")
    if index is None:
        index = meta["model-index"] = []
    if not isinstance(index, list) or not all(isinstance(m, dict) for m in index):
        raise FormatError('the card\'s "model-index" is not a list of models: fix it before adding results')
    if not index:
        index.append({"name": model_name, "results": []})
    model = index[0]
    results = model.get("results")
    if results is None:
        results = model["results"] = []
    if not isinstance(results, list):
        raise FormatError('the card\'s "model-index[0].results" is not a list: fix it before adding results')
    new = report.model_index_result()
    results[:] = [r for r in results if not (isinstance(r, dict) and _same(r, new))] + [new]


def _content(report: BiasReport) -> str:
    head = "| " + " | ".join(report.columns) + " |\n|" + "---|" * len(report.columns) + "\n"
    table = head + "".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |\n" for row in report.rows)
    notes = "".join(f"{n}\n\n" for n in report.notes)
    return f"### {report.title}\n\n{notes}{table}\n"


def _merge_body(body: str, report: BiasReport) -> str:
    return put_block(body, f"openckpt-bias:{report.suite}", _content(report), section=SECTION_TITLE)


def update_card(text: str | None, report: BiasReport, *, model_name: str) -> str:
    """``text`` (a README.md, or None for none yet) with ``report`` in its metadata and its bias section."""
    meta, body, errors = parse_card(text or f"# {model_name}\n")
    if errors:
        raise FormatError(f"README.md: {errors[0]}; fix the card before adding results")
    meta = dict(meta or {})
    _merge_index(meta, report, model_name)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n{_merge_body(body.lstrip(chr(10)), report)}"


def bias_results(metadata: dict[str, Any]) -> list[BiasResult]:
    """The bias results of a card's ``model-index`` (malformed entries skipped)."""
    out: list[BiasResult] = []
    index = metadata.get("model-index")
    for model in index if isinstance(index, list) else []:
        for result in (model.get("results") if isinstance(model, dict) else None) or []:
            if not _is_bias(result):
                continue
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            title = str(task.get("name") or task.get("type") or "bias") if isinstance(task, dict) else "bias"
            name = str(dataset.get("name") or "") if isinstance(dataset, dict) else ""
            metrics = [
                (str(m.get("name") or m.get("type")), m.get("value"))
                for m in result["metrics"]
                if isinstance(m, dict) and not isinstance(m.get("value"), dict | list)
            ]
            out.append(BiasResult(title.removeprefix("Bias: "), name, metrics))
    return out


def backdoor_results(metadata: dict[str, Any]) -> list[BackdoorResult]:
    """The ``openckpt evaluate backdoor`` scans of a card's ``model-index``, verdict first."""
    out: list[BackdoorResult] = []
    index = metadata.get("model-index")
    for model in index if isinstance(index, list) else []:
        for result in (model.get("results") if isinstance(model, dict) else None) or []:
            if not _is_bias(result):
                continue
            metrics = {m.get("type"): m for m in result["metrics"] if isinstance(m, dict)}
            if not any(str(kind).startswith("backdoor_") for kind in metrics):
                continue
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            verdict = metrics.pop("backdoor_suspected", None)
            strongest = next((m for kind, m in metrics.items() if str(kind).startswith("backdoor_")), None)
            out.append(
                BackdoorResult(
                    title=str(task.get("name") or "Backdoor scan") if isinstance(task, dict) else "Backdoor scan",
                    dataset=str(dataset.get("name") or "") if isinstance(dataset, dict) else "",
                    suspected=None if verdict is None else bool(verdict.get("value")),
                    score=None if strongest is None else (str(strongest.get("name")), strongest.get("value")),
                )
            )
    return out
