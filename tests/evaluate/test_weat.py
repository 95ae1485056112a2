"""WEAT with the real all-MiniLM-L6-v2, offline: flowers/insects carry a large effect, a shuffled control does not."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from openckpt.errors import UnsuitableModelError
from openckpt.evaluate.encoder import embed, pooling_mode
from openckpt.evaluate.weat import WeatTest, WordSet, evaluate_weat, run_test, weat_tests


@pytest.fixture(scope="module")
def weat1() -> WeatTest:
    (test,) = [t for t in weat_tests() if t.id == "weat1"]
    return test


@pytest.fixture(scope="module")
def vectors(minilm: Path, weat1: WeatTest) -> dict[str, np.ndarray]:
    """Each WEAT 1 word embedded by MiniLM with no hub reachable."""
    mp = pytest.MonkeyPatch()
    from huggingface_hub import constants

    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(constants, "HF_HUB_OFFLINE", True)
    try:
        words = sorted(set(weat1.words))
        return dict(zip(words, embed(minilm, words), strict=True))
    finally:
        mp.undo()


def test_shipped_tests_are_complete() -> None:
    tests = {t.id: t for t in weat_tests()}
    assert {"weat1", "weat2", "weat6", "weat7", "weat8"} <= set(tests)
    flowers = tests["weat1"]
    assert (flowers.x.name, flowers.y.name, flowers.a.name, flowers.b.name) == ("flowers", "insects", "pleasant",
                                                                                "unpleasant")  # fmt: skip
    assert all(len(t.x.words) == len(t.y.words) and len(t.a.words) >= 8 for t in tests.values())


def test_minilm_pools_by_mean(minilm: Path) -> None:
    assert pooling_mode(minilm) == "mean"


def test_flowers_insects_large_effect(vectors: dict[str, np.ndarray], weat1: WeatTest) -> None:
    result = run_test(vectors, weat1, permutations=10_000, seed=0)
    assert result.effect_size > 1
    assert result.p_value < 0.001
    assert not result.exact and result.partitions == 10_000
    assert run_test(vectors, weat1, permutations=10_000, seed=0) == result  # seeded: the same every run


def test_shuffled_control_shows_no_effect(vectors: dict[str, np.ndarray], weat1: WeatTest) -> None:
    """Flowers and insects pooled and dealt at random (seeded) into two target sets: no large, significant effect."""
    pooled = [*weat1.x.words, *weat1.y.words]
    random.Random(7).shuffle(pooled)
    half = len(pooled) // 2
    control = WeatTest("control", "shuffled targets", WordSet("X'", tuple(pooled[:half])),
                       WordSet("Y'", tuple(pooled[half:])), weat1.a, weat1.b)  # fmt: skip
    result = run_test(vectors, control, permutations=10_000, seed=0)
    assert abs(result.effect_size) < 0.8
    assert result.p_value > 0.05


def test_effect_size_and_exact_p_value_by_hand() -> None:
    """2-d unit vectors: A = (1, 0), B = (0, 1), so s(w) = w_x - w_y; X = {s=1, s=0.6}, Y = {s=-0.2, s=-1}."""

    def at(s: float) -> np.ndarray:  # a unit vector whose s(w) = cos - sin is ``s``
        angle = np.arccos(s / np.sqrt(2)) - np.pi / 4
        return np.array([np.cos(angle), np.sin(angle)])

    values = {"x1": 1.0, "x2": 0.6, "y1": -0.2, "y2": -1.0}
    vectors = {w: at(s) for w, s in values.items()} | {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    test = WeatTest("t", "hand", WordSet("X", ("x1", "x2")), WordSet("Y", ("y1", "y2")), WordSet("A", ("a",)),
                    WordSet("B", ("b",)))  # fmt: skip
    result = run_test(vectors, test)
    s = np.array(list(values.values()))
    assert result.effect_size == pytest.approx((0.8 - (-0.6)) / s.std(ddof=1))
    assert result.statistic == pytest.approx(1.6 - (-1.2))
    # 6 ways to pick 2 of 4 words as X; only {x1, x2} reaches the observed sum 1.6
    assert (result.partitions, result.exact) == (6, True)
    assert result.p_value == pytest.approx(1 / 6)


def test_report_of_minilm(minilm: Path, weat1: WeatTest, offline: None) -> None:
    report = evaluate_weat(minilm, tests=[weat1], permutations=1000)
    assert report.suite == "weat" and report.task_type == "feature-extraction"
    (d, p) = report.metrics
    assert (d.type, d.config, p.type) == ("weat_effect_size", "weat1", "weat_p_value")
    assert d.value > 1 and p.value < 0.01
    assert report.rows[0][0] == "weat1"


def test_weat_refuses_a_classifier(classifier: Path) -> None:
    expected = r"weat measures a sentence encoder, but this is a sequence classifier \(BertForSequenceClassification\)"
    with pytest.raises(UnsuitableModelError, match=expected + "; use --suite fairness"):
        evaluate_weat(classifier)
