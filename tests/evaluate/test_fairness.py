"""Group fairness with fairlearn on a classifier whose predictions are known: positive exactly when "yes" occurs."""

from __future__ import annotations

from pathlib import Path

import pytest

from openckpt.errors import FormatError, UnsuitableModelError
from openckpt.evaluate.fairness import evaluate_fairness, predict

# group, text, label: predicted positive iff the text says "yes".
#   A: TP, FP, FN, TN             -> accuracy 2/4, selection rate 2/4, TPR 1/2, FPR 1/2
#   B: TP, TP, FN, TN, TN         -> accuracy 4/5, selection rate 2/5, TPR 2/3, FPR 0/2
ROWS = [("A", "yes please", 1), ("A", "yes", 0), ("A", "no", 1), ("A", "ok", 0),
        ("B", "yes", 1), ("B", "yes thanks", 1), ("B", "maybe", 1), ("B", "no", 0), ("B", "no thanks", 0)]  # fmt: skip


def write_csv(path: Path, *, names: bool = False) -> Path:
    label = {0: "negative", 1: "positive"} if names else {0: "0", 1: "1"}
    ages = ["young", "old"] * 5
    lines = ["group,age,text,label"] + [f"{g},{ages[i]},{t},{label[y]}" for i, (g, t, y) in enumerate(ROWS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_classifier_says_positive_exactly_on_yes(classifier: Path) -> None:
    predicted, labels = predict(classifier, [t for _, t, _ in ROWS])
    assert predicted == [int("yes" in t) for _, t, _ in ROWS]
    assert labels == {"negative": 0, "positive": 1}


@pytest.mark.parametrize("names", [False, True], ids=["label-ids", "label-names"])
def test_metrics_match_hand_computed_values(classifier: Path, tmp_path: Path, names: bool) -> None:
    data = write_csv(tmp_path / "reviews.csv", names=names)
    report = evaluate_fairness(classifier, data, sensitive_cols=["group"])
    d = report.details
    assert d["demographic_parity_difference"] == pytest.approx(0.1)  # |2/4 - 2/5|
    assert d["equalized_odds_difference"] == pytest.approx(0.5)  # max(|1/2 - 2/3|, |1/2 - 0|)
    a, b = d["by_group"]["group=A"], d["by_group"]["group=B"]
    assert (a["count"], a["accuracy"], a["selection_rate"]) == (4, pytest.approx(0.5), pytest.approx(0.5))
    assert (a["true_positive_rate"], a["false_positive_rate"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (b["count"], b["accuracy"], b["selection_rate"]) == (5, pytest.approx(0.8), pytest.approx(0.4))
    assert (b["true_positive_rate"], b["false_positive_rate"]) == (pytest.approx(2 / 3), pytest.approx(0.0))
    assert d["overall"]["accuracy"] == pytest.approx(6 / 9) and d["positive_label"] == "positive"
    by_type = {(m.type, m.config): m.value for m in report.metrics}
    assert by_type[("demographic_parity_difference", "group")] == pytest.approx(0.1)
    assert by_type[("equalized_odds_difference", "group")] == pytest.approx(0.5)
    assert by_type[("accuracy", "group=B")] == pytest.approx(0.8)
    assert by_type[("selection_rate", "group=A")] == pytest.approx(0.5)
    assert report.rows[0][:4] == ["group=A", "4", "0.500", "0.500"]


def test_several_sensitive_columns_intersect(classifier: Path, tmp_path: Path) -> None:
    report = evaluate_fairness(classifier, write_csv(tmp_path / "r.csv"), sensitive_cols=["group", "age"])
    groups = report.details["by_group"]
    assert set(groups) == {"group=A, age=young", "group=A, age=old", "group=B, age=young", "group=B, age=old"}
    assert sum(g["count"] for g in groups.values()) == len(ROWS)


def test_limit_takes_the_first_rows(classifier: Path, tmp_path: Path) -> None:
    report = evaluate_fairness(classifier, write_csv(tmp_path / "r.csv"), sensitive_cols=["group"], limit=4)
    assert report.details["rows"] == 4 and set(report.details["by_group"]) == {"group=A"}


def test_bad_inputs_are_named(classifier: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "r.csv")
    with pytest.raises(FormatError, match=r"no column 'sex'; the columns are 'group', 'age', 'text', 'label'"):
        evaluate_fairness(classifier, data, sensitive_cols=["sex"])
    bad = tmp_path / "bad.csv"
    bad.write_text("group,text,label\nA,yes,maybe\n")
    with pytest.raises(FormatError, match=r"label 'maybe' is neither a class id below 2 nor a label of the model"):
        evaluate_fairness(classifier, bad, sensitive_cols=["group"])


def test_fairness_refuses_a_masked_lm_and_an_encoder(masked_lm: Path, minilm: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "r.csv")
    expected = r"fairness measures a sequence classifier, but this is a masked language model \(BertForMaskedLM\); "
    with pytest.raises(UnsuitableModelError, match=expected + "use --suite crows-pairs"):
        evaluate_fairness(masked_lm, data, sensitive_cols=["group"])
    with pytest.raises(UnsuitableModelError, match=r"but this is a sentence encoder \(BertModel\); use --suite weat"):
        evaluate_fairness(minilm, data, sensitive_cols=["group"])
