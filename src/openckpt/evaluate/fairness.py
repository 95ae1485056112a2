"""Group fairness of a text classifier on a labelled CSV, with fairlearn's ``MetricFrame``.

The classifier's prediction for each row's text is compared with the row's label, per group of the sensitive
column(s) (several columns: their intersections). A multi-class model is judged on one decision, "positive label
or not", so demographic parity and equalized odds keep their binary meaning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError, UnsuitableModelError
from openckpt.evaluate.models import ModelKind, Suite, load_model, require_kind
from openckpt.evaluate.report import BiasReport, Metric, fmt

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["evaluate_fairness", "read_table"]

BATCH = 32


def read_table(path: Path, columns: Sequence[str], *, limit: int | None = None) -> pd.DataFrame:
    """The CSV at ``path`` as strings, checked to have ``columns`` and at least one row (the first ``limit`` rows)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=limit)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise FormatError(f"not a readable CSV: {e}", path=path) from e
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FormatError(
            f"no column {', '.join(map(repr, missing))}; the columns are {', '.join(map(repr, frame.columns))}",
            path=path,
        )
    if frame.empty:
        raise FormatError("no rows", path=path)
    return frame


def _class_ids(values: Sequence[str], label2id: dict[str, int], num_labels: int, path: Path) -> list[int]:
    """Each CSV label as the model's class id: a label name of the model's config, or the id itself."""
    ids = []
    for value in values:
        if value in label2id:
            ids.append(label2id[value])
        elif value.strip().lstrip("-").isdigit() and 0 <= int(value) < num_labels:
            ids.append(int(value))
        else:
            names = ", ".join(sorted(label2id))
            raise FormatError(
                f"label {value!r} is neither a class id below {num_labels} nor a label of the model ({names})",
                path=path,
            )
    return ids


def _positive(pos_label: str | None, label2id: dict[str, int], num_labels: int) -> int:
    if pos_label is None:
        if num_labels != 2:
            names = ", ".join(sorted(label2id))
            raise UnsuitableModelError(
                f"a classifier with {num_labels} labels: name the positive one ({names}) "
                "to measure the fairness of that decision"
            )
        return 1
    if pos_label in label2id:
        return label2id[pos_label]
    if pos_label.isdigit() and int(pos_label) < num_labels:
        return int(pos_label)
    raise UnsuitableModelError(f"positive label {pos_label!r} is not a label of the model ({', '.join(label2id)})")


def predict(directory: Path, texts: list[str], *, batch_size: int = BATCH) -> tuple[list[int], dict[str, int]]:
    """(predicted class id per text, the model's label → id mapping)."""
    import torch

    model, tokenizer = load_model(directory, ModelKind.classifier)
    out: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            out.extend(model(**batch).logits.argmax(dim=-1).tolist())
    id2label = model.config.id2label or {}
    label2id = {str(name): int(i) for i, name in id2label.items()}
    return out, label2id


def _group_name(columns: Sequence[str], key: Any) -> str:
    values = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{c}={v}" for c, v in zip(columns, values, strict=True))


def evaluate_fairness(
    directory: Path,
    data: Path,
    *,
    sensitive_cols: Sequence[str],
    text_col: str = "text",
    label_col: str = "label",
    pos_label: str | None = None,
    limit: int | None = None,
) -> BiasReport:
    """Demographic parity difference, equalized odds difference, and accuracy and selection rate per group."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    require_kind(directory, Suite.fairness)
    if not sensitive_cols:
        raise FormatError("name at least one sensitive-feature column", path=data)
    frame = read_table(data, [text_col, label_col, *sensitive_cols], limit=limit)
    predicted, label2id = predict(directory, frame[text_col].tolist())
    num_labels = len(label2id)
    positive = _positive(pos_label, label2id, num_labels)
    truth = _class_ids(frame[label_col].tolist(), label2id, num_labels, data)
    y_true = [int(t == positive) for t in truth]
    y_pred = [int(p == positive) for p in predicted]
    groups = frame[list(sensitive_cols)]
    metrics = {
        "count": count,
        "accuracy": accuracy_score,
        "selection_rate": selection_rate,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
    }
    mf = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    dpd = float(demographic_parity_difference(y_true, y_pred, sensitive_features=groups))
    eod = float(equalized_odds_difference(y_true, y_pred, sensitive_features=groups))
    by_group = {
        _group_name(sensitive_cols, key): {k: float(v) for k, v in row.items()} for key, row in mf.by_group.iterrows()
    }
    overall = {k: float(v) for k, v in mf.overall.items()}
    id2label = {i: name for name, i in label2id.items()}
    over = " & ".join(sensitive_cols)
    found = [
        Metric("demographic_parity_difference", f"Demographic parity difference ({over})", round(dpd, 4), over),
        Metric("equalized_odds_difference", f"Equalized odds difference ({over})", round(eod, 4), over),
        Metric("accuracy", "Accuracy (all rows)", round(overall["accuracy"], 4)),
        Metric("selection_rate", "Selection rate (all rows)", round(overall["selection_rate"], 4)),
    ]
    for group, values in by_group.items():
        found.append(Metric("accuracy", f"Accuracy ({group})", round(values["accuracy"], 4), group))
        found.append(Metric("selection_rate", f"Selection rate ({group})", round(values["selection_rate"], 4), group))
    rows = [
        [
            g,
            str(int(v["count"])),
            fmt(v["accuracy"]),
            fmt(v["selection_rate"]),
            fmt(v["true_positive_rate"]),
            fmt(v["false_positive_rate"]),
        ]
        for g, v in by_group.items()
    ]
    rows.append(
        [
            "all rows",
            str(int(overall["count"])),
            fmt(overall["accuracy"]),
            fmt(overall["selection_rate"]),
            fmt(overall["true_positive_rate"]),
            fmt(overall["false_positive_rate"]),
        ]
    )
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    notes = [
        f"Predictions of the classifier on {len(frame)} rows of `{data.name}` (sha256 `{digest[:16]}…`), text column "
        f"`{text_col}`, labels `{label_col}`, groups by {', '.join(f'`{c}`' for c in sensitive_cols)}; positive "
        f"label `{id2label[positive]}`.",
        f"Demographic parity difference **{fmt(dpd)}** (largest gap in selection rate between groups) and equalized "
        f"odds difference **{fmt(eod)}** (largest gap in true or false positive rate); 0 means parity.",
    ]
    return BiasReport(
        suite=Suite.fairness.value,
        title="Group fairness (fairlearn)",
        task_type="text-classification",
        dataset_type="csv",
        dataset_name=data.name,
        metrics=[m for m in found if m.value == m.value],
        columns=["group", "rows", "accuracy", "selection rate", "TPR", "FPR"],
        rows=rows,
        notes=notes,
        details={
            "data": str(data),
            "sha256": digest,
            "rows": len(frame),
            "text_col": text_col,
            "label_col": label_col,
            "sensitive_cols": list(sensitive_cols),
            "positive_label": id2label[positive],
            "demographic_parity_difference": dpd,
            "equalized_odds_difference": eod,
            "overall": overall,
            "by_group": by_group,
        },
    )
