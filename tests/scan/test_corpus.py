"""Accuracy on the shared public corpus (shared/corpus/pickle-public, beside the clone): every label, 100%.

An extra check on top of test_realfiles.py (which needs nothing outside the repository): where ../shared is absent,
one test says so as a visible skip, and the per-sample tests are not collected. The samples are data: they are only
ever read as bytes by the scanner.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openckpt.scan.api import scan_file
from openckpt.scan.verdict import Completeness, Severity, Verdict

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus" / "pickle-public"
LABELS = CORPUS / "labels.tsv"


def _samples() -> list[tuple[str, str]]:
    if not LABELS.is_file():
        return []
    rows = [line.split("\t") for line in LABELS.read_text().splitlines()[1:] if line.strip()]
    return [(path, label) for path, label in rows]


SAMPLES = _samples()
ABSENT = f"public corpus absent: {LABELS} not found, so its accuracy check did NOT run (test_realfiles.py did)"


def test_corpus_present() -> None:
    if not SAMPLES:
        pytest.skip(ABSENT)


@pytest.mark.parametrize(("path", "label"), SAMPLES, ids=[p for p, _ in SAMPLES] or None)
def test_corpus_sample(path: str, label: str) -> None:
    result = scan_file(CORPUS / path)
    summary = f"{result.verdict.value}/{result.completeness.value}: {[f.reason for f in result.findings][:4]}"
    if label == "malicious":
        assert result.verdict is Verdict.MALICIOUS, summary
    elif label == "benign":
        assert result.clean, summary
        assert not [f for f in result.findings if f.severity > Severity.INFO or f.inconclusive], summary
    elif label == "invalid":  # an explicit "not a model file": opaque data, or inconclusive
        assert result.verdict in (Verdict.OPAQUE, Verdict.INCONCLUSIVE), summary
    elif label == "inconclusive":
        assert result.completeness is Completeness.INCONCLUSIVE, summary
        assert not result.clean, summary
    else:
        pytest.fail(f"unknown label {label!r}")


def test_corpus_is_complete() -> None:
    """Every file in the corpus is labelled, so a new sample cannot be skipped silently."""
    if not SAMPLES:
        pytest.skip(ABSENT)
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()}
    assert files - {"SOURCES.md", "labels.tsv"} == {p for p, _ in SAMPLES}
