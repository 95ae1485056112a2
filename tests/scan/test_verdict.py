"""Merge rules: the worst finding decides, any inconclusive finding makes the result at least inconclusive."""

from __future__ import annotations

from openckpt.scan.limits import Context, Limits
from openckpt.scan.verdict import Completeness, FileResult, Finding, ScanReport, Severity, Verdict, merge


def _f(severity: Severity, inconclusive: bool = False) -> Finding:
    return Finding("rule", severity, "why", "file", inconclusive=inconclusive)


def test_merge() -> None:
    assert merge([]) == (Verdict.CLEAN, Completeness.COMPLETE)
    assert merge([_f(Severity.INFO)]) == (Verdict.CLEAN, Completeness.COMPLETE)
    assert merge([_f(Severity.INFO, True)]) == (Verdict.INCONCLUSIVE, Completeness.INCONCLUSIVE)
    assert merge([_f(Severity.OPAQUE)]) == (Verdict.OPAQUE, Completeness.COMPLETE)
    assert merge([_f(Severity.NEEDS_CODE), _f(Severity.OPAQUE)]) == (Verdict.NEEDS_CODE, Completeness.COMPLETE)
    assert merge([_f(Severity.NEEDS_CODE), _f(Severity.INFO, True)])[0] is Verdict.INCONCLUSIVE
    assert merge([_f(Severity.SUSPICIOUS, True)]) == (Verdict.SUSPICIOUS, Completeness.INCONCLUSIVE)
    assert merge([_f(Severity.SUSPICIOUS), _f(Severity.MALICIOUS)]) == (Verdict.MALICIOUS, Completeness.COMPLETE)


def test_report_exit_codes() -> None:
    clean = FileResult("a", "pickle", [])
    partial = FileResult("b", "zip", [_f(Severity.INFO, True)])
    bad = FileResult("c", "pickle", [_f(Severity.SUSPICIOUS)])
    assert ScanReport([clean]).exit_code == 0
    assert ScanReport([clean, partial]).exit_code == 2
    assert ScanReport([partial, bad]).exit_code == 1
    assert not ScanReport([clean, partial]).clean
    needs = FileResult("d", "pickle", [_f(Severity.NEEDS_CODE)], imports=["ultralytics.nn.tasks.DetectionModel"])
    opaque = FileResult("e", "unknown", [_f(Severity.OPAQUE)])
    assert ScanReport([clean, needs, opaque]).exit_code == 0 and ScanReport([opaque]).clean
    assert not ScanReport([needs]).clean and ScanReport([needs]).packages == ["ultralytics"]


def test_findings_are_deduplicated_and_capped() -> None:
    ctx = Context("f", Limits(max_findings=2))
    for _ in range(5):
        ctx.add("r", Severity.SUSPICIOUS, "same")
    ctx.add("r", Severity.SUSPICIOUS, "other")
    ctx.add("r", Severity.SUSPICIOUS, "dropped")
    ctx.add("r", Severity.MALICIOUS, "kept: it changes the verdict")
    kept = [(f.reason, f.count) for f in ctx.findings]
    assert kept == [("same", 5), ("other", 1), ("kept: it changes the verdict", 1)]
