"""WEAT (Caliskan et al., 2017) on a sentence encoder: effect sizes and permutation p-values on shipped word lists.

For target word sets X, Y and attribute sets A, B, each word w gets s(w) = mean cos(w, a) - mean cos(w, b). The
effect size is d = (mean of s over X - mean over Y) / standard deviation (n - 1) of s over X and Y together. The
one-sided p-value is the share of equal-size re-partitions (Xi, Yi) of the target words whose statistic
sum(s over Xi) - sum(s over Yi) is at least the observed one: every partition when there are few enough, else a
seeded random sample (then p counts the observed partition too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openckpt.errors import FormatError
from openckpt.evaluate.models import Suite, require_kind
from openckpt.evaluate.report import BiasReport, Metric, fmt

if TYPE_CHECKING:
    import numpy as np

__all__ = ["WeatResult", "WeatTest", "WordSet", "association", "evaluate_weat", "run_test", "weat_tests"]

PERMUTATIONS = 10_000
EXACT_LIMIT = 100_000
"""Up to this many partitions, the p-value is exact (every partition is counted)."""


@dataclass(frozen=True)
class WordSet:
    name: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class WeatTest:
    """Targets X, Y and attributes A, B: does the model associate X with A and Y with B more than the reverse?"""

    id: str
    title: str
    x: WordSet
    y: WordSet
    a: WordSet
    b: WordSet

    @property
    def words(self) -> list[str]:
        return [w for s in (self.x, self.y, self.a, self.b) for w in s.words]


@dataclass(frozen=True)
class WeatResult:
    test: str
    title: str
    effect_size: float
    p_value: float
    statistic: float
    partitions: int
    """How many re-partitions the p-value counts."""
    exact: bool
    """True when every partition was counted."""


def weat_tests() -> list[WeatTest]:
    """The WEAT tests that ship with openckpt (``evaluate/data/weat.json``)."""
    raw = json.loads(resources.files("openckpt.evaluate").joinpath("data", "weat.json").read_bytes())
    return [
        WeatTest(t["id"], t["title"], *(WordSet(t[k]["name"], tuple(t[k]["words"])) for k in ("X", "Y", "A", "B")))
        for t in raw["tests"]
    ]


def association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for each row of ``w``; all three are unit-normalised embeddings."""
    result: np.ndarray = (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)
    return result


def _p_value(s: np.ndarray, nx: int, *, permutations: int, seed: int) -> tuple[float, int, bool]:
    """(one-sided p, partitions counted, exact) for the first ``nx`` entries of ``s`` being X."""
    import numpy as np

    n = len(s)
    observed = s[:nx].sum()
    tolerance = 1e-9 * max(1.0, float(np.abs(s).sum()))
    if math.comb(n, nx) <= EXACT_LIMIT:
        sums = np.fromiter((s[list(c)].sum() for c in combinations(range(n), nx)), dtype=np.float64)
        return float((sums >= observed - tolerance).mean()), len(sums), True
    rng = np.random.default_rng(seed)
    picks = rng.random((permutations, n)).argsort(axis=1)[:, :nx]
    hits = int((s[picks].sum(axis=1) >= observed - tolerance).sum())
    return (hits + 1) / (permutations + 1), permutations, False


def run_test(
    vectors: dict[str, np.ndarray], test: WeatTest, *, permutations: int = PERMUTATIONS, seed: int = 0
) -> WeatResult:
    """Effect size and p-value of ``test`` given each word's embedding in ``vectors``."""
    import numpy as np

    def unit(words: Sequence[str]) -> np.ndarray:
        m = np.stack([vectors[w] for w in words]).astype(np.float64)
        normed: np.ndarray = m / np.linalg.norm(m, axis=1, keepdims=True)
        return normed

    if len(test.x.words) != len(test.y.words) or len(test.x.words) < 2:
        raise FormatError(f"WEAT {test.id}: X and Y need the same number of words (at least 2)")
    a, b = unit(test.a.words), unit(test.b.words)
    s = association(unit([*test.x.words, *test.y.words]), a, b)
    nx = len(test.x.words)
    d = float((s[:nx].mean() - s[nx:].mean()) / s.std(ddof=1))
    p, partitions, exact = _p_value(s, nx, permutations=permutations, seed=seed)
    return WeatResult(test.id, test.title, d, p, float(s[:nx].sum() - s[nx:].sum()), partitions, exact)


def evaluate_weat(
    directory: Path,
    *,
    tests: Sequence[WeatTest] | None = None,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> BiasReport:
    """Every shipped WEAT test (or ``tests``) on the sentence encoder in ``directory``, each word embedded alone."""
    from openckpt.evaluate.encoder import embed

    require_kind(directory, Suite.weat)
    chosen = list(tests) if tests is not None else weat_tests()
    words = sorted({w for t in chosen for w in t.words})
    vectors = dict(zip(words, embed(directory, words), strict=True))
    results = [run_test(vectors, t, permutations=permutations, seed=seed) for t in chosen]
    metrics: list[Metric] = []
    rows: list[list[str]] = []
    for r in results:
        metrics.append(Metric("weat_effect_size", f"WEAT effect size ({r.title})", round(r.effect_size, 4), r.test))
        metrics.append(Metric("weat_p_value", f"WEAT p-value ({r.title})", round(r.p_value, 6), r.test))
        p = f"{r.p_value:.2g}" if r.p_value >= 1e-4 else "< 1e-4"
        rows.append([r.test, r.title, fmt(r.effect_size, 2), p])
    how = f"seeded ({seed}) sample of {permutations:,} re-partitions, unless all could be counted"
    notes = [
        "Effect size d (Caliskan et al., 2017): how much more the first target set is associated with the first "
        "attribute set than the second target set is, in standard deviations; 0 means no association, |d| > 0.8 "
        f"is large. One-sided permutation p-values ({how}). Word lists: Caliskan et al. (2017), shipped with openckpt.",
    ]
    details: dict[str, Any] = {"permutations": permutations, "seed": seed, "tests": [r.__dict__ for r in results]}
    return BiasReport(
        suite=Suite.weat.value,
        title="WEAT word-embedding association",
        task_type="feature-extraction",
        dataset_type="weat",
        dataset_name="WEAT (Caliskan et al. 2017)",
        metrics=metrics,
        columns=["test", "targets vs attributes", "effect size d", "p-value"],
        rows=rows,
        notes=notes,
        details=details,
    )
