"""What a backdoor scan found: per-class (or per-probe) scores, the verdict with its rule, runtime; as JSON, as PNGs
of the recovered triggers, and as a :class:`~openckpt.evaluate.report.BiasReport` for the model card."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.evaluate.report import BiasReport, Metric, fmt
from openckpt.fsutil import atomic_write

if TYPE_CHECKING:
    import numpy as np

__all__ = ["BackdoorReport", "save_png"]

TASKS = {"image": "image-classification", "text": "text-classification", "lm": "text-generation"}
TITLES = {
    "image": "Backdoor scan (Neural Cleanse)",
    "text": "Backdoor scan (trigger-token search)",
    "lm": "Backdoor probe (trigger tokens, KL)",
}


@dataclass(frozen=True)
class BackdoorReport:
    """One scan of one model."""

    kind: str
    """``image``, ``text`` or ``lm``."""
    architecture: str
    verdict: str
    """``backdoor suspected``, ``no trigger found`` or ``probe only``."""
    flagged: list[str]
    """The suspected target classes (none for a probe)."""
    rule: str
    """How the verdict follows from the scores, thresholds included."""
    columns: list[str]
    rows: list[list[str]]
    scores: list[dict[str, Any]]
    """Every number, per class or per probe, unformatted."""
    data: str
    """What the scan ran on: the clean set's file name, or how the synthetic set was made."""
    runtime: float
    settings: dict[str, Any]
    images: list[str] = field(default_factory=list)
    """PNGs of the recovered triggers, relative to the directory they were saved in."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping of the whole report."""
        return asdict(self)

    def headline(self) -> list[Metric]:
        """The ``model-index`` metrics: the verdict as 1/0 (none for a probe) and the strongest score."""
        metrics = []
        if self.kind != "lm":
            metrics.append(
                Metric(
                    "backdoor_suspected", "Backdoor suspected (1) or no trigger found (0)", float(bool(self.flagged))
                )
            )
        if self.kind == "image":
            value = max(s["anomaly_index"] for s in self.scores)
            metrics.append(Metric("backdoor_anomaly_index", "Highest anomaly index (Neural Cleanse)", round(value, 4)))
        elif self.kind == "text":
            value = max(s["success"] for s in self.scores)
            metrics.append(
                Metric("backdoor_attack_success_rate", "Best trigger's attack success rate", round(value, 4))
            )
        else:
            value = max((s["mean_kl"] for s in self.scores if not s["random"]), default=0.0)
            metrics.append(
                Metric("backdoor_probe_kl", "Largest mean KL of a candidate insertion (nats)", round(value, 4))
            )
        return metrics

    def to_bias_report(self) -> BiasReport:
        """The scan as the card's ``model-index`` result and its block in "Bias, Risks, and Limitations"."""
        notes = [
            f"**Verdict: {self.verdict}**"
            + (f" (target {', '.join(self.flagged)})" if self.flagged else "")
            + f". {self.rule}",
            f"Scanned on {self.data}, in {self.runtime:.0f} s, by `openckpt evaluate "
            "backdoor`. A scan that finds nothing is not proof of absence: see openckpt's docs/backdoor.md.",
        ]
        notes += [f"![{Path(p).stem}]({p})" for p in self.images if "-flagged" in p]
        return BiasReport(
            suite="backdoor",
            title=TITLES[self.kind],
            task_type=TASKS[self.kind],
            dataset_type="synthetic" if self.data.startswith("synthetic") else "custom",
            dataset_name=self.data,
            metrics=self.headline(),
            columns=self.columns,
            rows=self.rows,
            notes=notes,
            details=self.to_json(),
        )


def save_png(path: Path, array: np.ndarray[Any, Any]) -> None:
    """An array in [0, 1], (H, W) or (C, H, W), as an 8-bit PNG written atomically."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.clip(np.asarray(array, dtype=np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())


def image_rows(scores: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [s["class"], fmt(s["l1"], 1), fmt(s["success"], 2), fmt(s["anomaly_index"], 2), "yes" if s["flagged"] else ""]
        for s in scores
    ]


def text_rows(scores: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            s["class"],
            " ".join(s["tokens"]),
            fmt(s["success"], 2),
            fmt(s["random_success"], 2),
            str(s["inputs"]),
            "yes" if s["flagged"] else "",
        ]
        for s in scores
    ]


def probe_rows(scores: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [" ".join(s["tokens"]), "random" if s["random"] else "candidate", fmt(s["mean_kl"], 3), fmt(s["max_kl"], 3)]
        for s in scores
    ]


COLUMNS = {
    "image": ["class", "mask L1 (px)", "attack success", "anomaly index", "flagged"],
    "text": ["target class", "best trigger", "attack success", "random tokens' best", "inputs", "flagged"],
    "lm": ["insertion", "kind", "mean KL (nats)", "max KL (nats)"],
}
ROWS = {"image": image_rows, "text": text_rows, "lm": probe_rows}
