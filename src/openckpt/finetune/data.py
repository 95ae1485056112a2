"""Fine-tuning data: a local CSV or JSONL file, its digest, a held-out split, and its tokenised examples.

Rows need a text column (default ``text``); text classification also a label column (default ``label``), whose
distinct values, sorted, become the class ids. The held-out split is a fixed fraction chosen by a seeded shuffle,
so the same file and seed always give the same split.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.digest import sha256_file
from openckpt.errors import FormatError

if TYPE_CHECKING:
    import torch

__all__ = ["DataFile", "Encoded", "Split", "encode", "label_ids", "read_data", "split_rows"]


@dataclass(frozen=True)
class DataFile:
    """The rows of a data file, with its name and sha256 as the model card records them."""

    path: Path
    sha256: str
    rows: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Split:
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]


@dataclass
class Encoded:
    """Tokenised examples as equal-length tensors; ``dataset[i]`` is one example (a dict of tensors)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0]) if self.tensors else 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                return [dict(row) for row in csv.DictReader(f)]
        if suffix in (".jsonl", ".ndjson", ".json"):
            rows = []
            for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise FormatError(f"line {n} is not a JSON object", path=path)
                    rows.append(row)
            return rows
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise FormatError(f"cannot read rows: {e}", path=path) from e
    raise FormatError("data must be .csv or .jsonl", path=path)


def read_data(path: Path, *, task: str, text_column: str = "text", label_column: str = "label") -> DataFile:
    """The rows of ``path``, checked to have the columns ``task`` needs (at least two rows)."""
    rows = _read_rows(path)
    if len(rows) < 2:
        raise FormatError(f"{len(rows)} rows: at least 2 are needed (one is held out)", path=path)
    needed = (text_column, label_column) if task == "text-classification" else (text_column,)
    for n, row in enumerate(rows, 1):
        for column in needed:
            if row.get(column) in (None, ""):
                raise FormatError(f"row {n} has no {column!r} value", path=path)
    return DataFile(path, sha256_file(path), rows)


def split_rows(rows: Sequence[dict[str, Any]], *, eval_fraction: float = 0.1, seed: int = 0) -> Split:
    """A seeded shuffle, then ``eval_fraction`` of the rows (at least one) held out for evaluation."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(rows) * eval_fraction))
    return Split([rows[i] for i in order[held:]], [rows[i] for i in order[:held]])


def label_ids(rows: Sequence[dict[str, Any]], column: str = "label") -> dict[str, int]:
    """Label name → class id, ids in the sorted order of the names (numerically when every name is an integer)."""
    names = {str(row[column]) for row in rows}
    numeric = all(n.lstrip("-").isdigit() for n in names)
    ordered = sorted(names, key=lambda n: (int(n), n) if numeric else (0, n))
    return {name: i for i, name in enumerate(ordered)}


def encode(
    rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    task: str,
    seq_len: int,
    labels: Mapping[str, int] | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> Encoded:
    """Tokenise ``rows`` to ``seq_len`` tokens (padded, truncated). Causal LM labels are the input ids, with
    padding masked out (-100); classification labels are the class ids of ``labels``."""
    import torch

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = [str(row[text_column]) for row in rows]
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    tensors = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if task == "causal-lm":
        tensors["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    else:
        assert labels is not None
        try:
            tensors["labels"] = torch.tensor([labels[str(row[label_column])] for row in rows], dtype=torch.long)
        except KeyError as e:
            raise FormatError(f"label {e.args[0]!r} is not one of the training labels {sorted(labels)}") from None
    return Encoded(tensors)
