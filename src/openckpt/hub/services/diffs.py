"""What a commit changed, file by file, for people: unified text diffs and tensor-level diffs of safetensors files.

Bounded in cost: a text diff reads files of at most :data:`MAX_TEXT` bytes and shows at most :data:`MAX_LINES`
lines, and the text diffs of one commit read at most :data:`TEXT_BUDGET` bytes; a tensor diff reads the two
safetensors headers (at most :data:`MAX_HEADER` bytes each), then compares the bytes of tensors whose dtype and
shape match, while the commit's budget of :data:`TENSOR_BUDGET` bytes lasts (and only tensors of at most
:data:`MAX_TENSOR` bytes). Max-abs is computed for float and integer dtypes with numpy; beyond the budget a tensor
of the same dtype and shape is "not compared", never guessed.
"""

from __future__ import annotations

import difflib
import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from math import prod

import numpy as np
from sqlalchemy.orm import Session

from openckpt.hub.db.models import Commit
from openckpt.hub.services.trees import EMPTY, FileEntry, changed_files
from openckpt.store.blobs import BlobStore

__all__ = [
    "FileDiff",
    "ResultRow",
    "WeightsSummary",
    "model_index_rows",
    "weights_summary",
    "TensorChange",
    "TensorInfo",
    "commit_diffs",
    "tree_diffs",
    "dtype_summary",
    "read_safetensors_header",
]

MAX_TEXT = 1_000_000
MAX_LINES = 3000
MAX_HEADER = 16 << 20
MAX_TENSOR = 64 << 20
TENSOR_BUDGET = 256 << 20
MAX_FILES = 100
"""Diffs computed for at most this many changed files of one commit; the others are listed only."""
TEXT_BUDGET = 8_000_000
"""Bytes of text (both sides) one commit page reads for its text diffs; files past it are listed only."""

_NUMPY = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "u1",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def params(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class TensorChange:
    """One tensor that differs: ``added``, ``removed``, ``changed`` (values), ``retyped`` (dtype or shape)."""

    name: str
    status: str
    old: TensorInfo | None
    new: TensorInfo | None
    max_abs: float | None = None


@dataclass
class FileDiff:
    """One changed file: a text diff (``lines`` of (kind, text), kind in ``+ - @ ``), a tensor diff, or a note."""

    status: str  # added | modified | deleted
    path: str
    size: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    tensors: list[TensorChange] | None = None
    unchanged_tensors: int = 0
    not_compared: int = 0
    note: str = ""
    truncated: bool = False


def _read(store: BlobStore, entry: FileEntry, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(bytes(part) for part in store.read(entry.sha256, start, end))


def read_safetensors_header(store: BlobStore, entry: FileEntry) -> dict[str, TensorInfo] | None:
    """The tensors of a safetensors file, by name in file order, from its header only; None if it is not one."""
    if entry.size < 8:
        return None
    (n,) = struct.unpack("<Q", _read(store, entry, 0, 8))
    if n > MAX_HEADER or 8 + n > entry.size:
        return None
    try:
        header = json.loads(_read(store, entry, 8, 8 + n))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    header.pop("__metadata__", None)
    infos: list[TensorInfo] = []
    try:
        for name, item in header.items():
            a, b = item["data_offsets"]
            infos.append(
                TensorInfo(name, str(item["dtype"]), tuple(int(s) for s in item["shape"]), 8 + n + a, 8 + n + b)
            )
    except (KeyError, TypeError, ValueError):
        return None
    infos.sort(key=lambda i: i.start)
    return {i.name: i for i in infos}


def dtype_summary(tensors: list[TensorInfo]) -> tuple[int, list[tuple[str, int]]]:
    """(parameter count, [(dtype, parameters)] largest first)."""
    by_dtype: Counter[str] = Counter()
    for t in tensors:
        by_dtype[t.dtype] += t.params
    return sum(by_dtype.values()), by_dtype.most_common()


def _as_float(data: bytes, dtype: str) -> np.ndarray | None:
    if dtype == "BF16":
        return (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if dtype in _NUMPY:
        return np.frombuffer(data, _NUMPY[dtype]).astype(np.float64)
    return None


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, nbytes: int) -> bool:
        if nbytes > MAX_TENSOR or 2 * nbytes > self.left:
            return False
        self.left -= 2 * nbytes
        return True


def _tensor_diff(
    store: BlobStore, old: FileEntry | None, new: FileEntry | None, diff: FileDiff, budget: _Budget
) -> bool:
    before = read_safetensors_header(store, old) if old is not None else {}
    after = read_safetensors_header(store, new) if new is not None else {}
    if before is None or after is None:
        return False
    changes: list[TensorChange] = []
    for name in list(before) + [n for n in after if n not in before]:
        a, b = before.get(name), after.get(name)
        if a is None:
            changes.append(TensorChange(name, "added", None, b))
        elif b is None:
            changes.append(TensorChange(name, "removed", a, None))
        elif (a.dtype, a.shape) != (b.dtype, b.shape):
            changes.append(TensorChange(name, "retyped", a, b))
        elif old is not None and new is not None and budget.take(a.end - a.start):
            x, y = _read(store, old, a.start, a.end), _read(store, new, b.start, b.end)
            if x == y:
                diff.unchanged_tensors += 1
                continue
            fx, fy = _as_float(x, a.dtype), _as_float(y, b.dtype)
            top = float(np.nanmax(np.abs(fx - fy))) if fx is not None and fy is not None and fx.size else None
            changes.append(TensorChange(name, "changed", a, b, top))
        else:
            diff.not_compared += 1
    diff.tensors = changes
    return True


def _text_diff(store: BlobStore, old: FileEntry | None, new: FileEntry | None, diff: FileDiff) -> None:
    if any(e is not None and e.size > MAX_TEXT for e in (old, new)):
        diff.note = f"Not shown: larger than {MAX_TEXT // 1000} kB."
        return
    texts: list[list[str]] = []
    for entry in (old, new):
        data = _read(store, entry) if entry is not None else b""
        if b"\0" in data[:8192]:
            diff.note = "Binary file: no text diff."
            return
        try:
            texts.append(data.decode("utf-8").splitlines())
        except UnicodeDecodeError:
            diff.note = "Not UTF-8 text: no text diff."
            return
    for line in difflib.unified_diff(texts[0], texts[1], lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        if len(diff.lines) >= MAX_LINES:
            diff.truncated = True
            break
        diff.lines.append((line[:1] if line[:1] in "+-@" else " ", line))


def commit_diffs(session: Session, store: BlobStore, *, commit: Commit) -> list[FileDiff]:
    """Every file ``commit`` changed against its first parent, with its text or tensor diff (bounded)."""
    base = EMPTY
    if commit.parent_id is not None and (parent := session.get(Commit, commit.parent_id)) is not None:
        base = parent.tree_id
    return tree_diffs(session, store, base=base, tree=commit.tree_id)


def tree_diffs(session: Session, store: BlobStore, *, base: str, tree: str) -> list[FileDiff]:
    """Every file that differs from tree ``base`` to tree ``tree`` (a pull request's changes), with its text or
    tensor diff (bounded as a commit's)."""
    old, new = changed_files(session, base, tree)
    budget, text_left = _Budget(TENSOR_BUDGET), TEXT_BUDGET
    diffs: list[FileDiff] = []
    for path in sorted(new.keys() | old.keys()):
        before, after = old.get(path), new.get(path)
        if before is not None and after is not None and (before.sha256, before.lfs) == (after.sha256, after.lfs):
            continue
        status = "added" if before is None else "deleted" if after is None else "modified"
        size = after.size if after is not None else before.size if before is not None else 0
        diff = FileDiff(status, path, size)
        diffs.append(diff)
        if len(diffs) > MAX_FILES:
            diff.note = f"Not shown: only the first {MAX_FILES} files of a commit are compared."
        elif path.endswith(".safetensors"):
            if not _tensor_diff(store, before, after, diff, budget):
                diff.note = "Not a readable safetensors file: no tensor diff."
        else:
            cost = sum(e.size for e in (before, after) if e is not None and e.size <= MAX_TEXT)
            if cost > text_left:
                diff.note = "Not shown: this commit changes more text than one page shows."
                continue
            text_left -= cost
            _text_diff(store, before, after, diff)
    return diffs


MAX_WEIGHT_FILES = 64


@dataclass(frozen=True)
class WeightsSummary:
    """What the repo page shows of a revision's safetensors files, from their headers."""

    params: int
    by_dtype: list[tuple[str, int]]
    files: int


def weights_summary(store: BlobStore, entries: dict[str, FileEntry]) -> WeightsSummary | None:
    """Parameter count and dtype split of the revision's ``*.safetensors`` files (at most :data:`MAX_WEIGHT_FILES`
    headers read); None when it has none or none is readable."""
    files = [e for p, e in sorted(entries.items()) if p.endswith(".safetensors")][:MAX_WEIGHT_FILES]
    tensors: list[TensorInfo] = []
    read = 0
    for entry in files:
        header = read_safetensors_header(store, entry)
        if header is not None:
            tensors.extend(header.values())
            read += 1
    if not read:
        return None
    params, by_dtype = dtype_summary(tensors)
    return WeightsSummary(params, by_dtype, read)


@dataclass(frozen=True)
class ResultRow:
    """One metric of a card's ``model-index``: the model, task, dataset, metric and value."""

    model: str
    task: str
    dataset: str
    metric: str
    value: str


def model_index_rows(metadata: dict[str, object], *, limit: int = 200) -> list[ResultRow]:
    """The metrics of a card's ``model-index`` as table rows (malformed entries skipped)."""
    rows: list[ResultRow] = []
    index = metadata.get("model-index")
    for model in index if isinstance(index, list) else []:
        if not isinstance(model, dict):
            continue
        for result in model.get("results") or []:
            if not isinstance(result, dict):
                continue
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            task_name = str(task.get("name") or task.get("type") or "") if isinstance(task, dict) else ""
            data_name = str(dataset.get("name") or dataset.get("type") or "") if isinstance(dataset, dict) else ""
            for m in result.get("metrics") or []:
                if isinstance(m, dict) and not isinstance(m.get("value"), dict | list) and len(rows) < limit:
                    value = m.get("value")
                    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                    name = str(m.get("name") or m.get("type") or "")
                    rows.append(ResultRow(str(model.get("name") or ""), task_name, data_name, name, shown))
    return rows
