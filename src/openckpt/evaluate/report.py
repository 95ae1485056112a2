"""The result of one bias suite: metrics for ``model-index``, one table for people, every number for machines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BIAS_METRIC_TYPES", "BiasReport", "Metric"]

BIAS_METRIC_TYPES = frozenset(
    {
        "stereotype_score",
        "weat_effect_size",
        "weat_p_value",
        "demographic_parity_difference",
        "equalized_odds_difference",
        "backdoor_suspected",
        "backdoor_anomaly_index",
        "backdoor_attack_success_rate",
        "backdoor_probe_kl",
    }
)
"""``model-index`` metric types that mark a result as a bias evaluation (the hub's repo page shows those)."""


@dataclass(frozen=True)
class Metric:
    """One ``model-index`` metric: ``type`` is its id, ``config`` the subset it covers (bias type, test, group)."""

    type: str
    name: str
    value: float
    config: str | None = None

    def to_card(self) -> dict[str, Any]:
        """The metric as a ``model-index`` entry."""
        entry: dict[str, Any] = {"type": self.type, "name": self.name, "value": self.value}
        if self.config is not None:
            entry["config"] = self.config
        return entry


@dataclass(frozen=True)
class BiasReport:
    """What a suite measured on one model."""

    suite: str
    """``fairness``, ``crows-pairs`` or ``weat``."""
    title: str
    task_type: str
    """The ``model-index`` task type: ``text-classification``, ``fill-mask``, ``feature-extraction``."""
    dataset_type: str
    dataset_name: str
    metrics: list[Metric]
    columns: list[str]
    rows: list[list[str]]
    """The table of the card section and of the CLI, already formatted."""
    notes: list[str] = field(default_factory=list)
    """How to read the numbers, what was measured on what, the data's provenance and license (markdown)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Every number, unformatted, for ``--json``."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping of the whole report."""
        return asdict(self)

    def model_index_result(self) -> dict[str, Any]:
        """This report as one ``results`` entry of ``model-index``."""
        return {
            "task": {"type": self.task_type, "name": f"Bias: {self.title}"},
            "dataset": {"type": self.dataset_type, "name": self.dataset_name},
            "metrics": [m.to_card() for m in self.metrics],
        }


def fmt(value: float, digits: int = 3) -> str:
    """A number for a table: ``digits`` decimals, ``n/a`` for NaN."""
    return "n/a" if value != value else f"{value:.{digits}f}"
