"""Which scan results the upload gate holds back (no server needed)."""

from __future__ import annotations

from openckpt.hub.db.models import Scan
from openckpt.hub.services.gate import _held


def scan(verdict: str, completeness: str, *rules: str) -> Scan:
    findings = [{"rule": r, "inconclusive": completeness == "inconclusive"} for r in rules]
    return Scan(sha256="0" * 64, rules_version="2", verdict=verdict, completeness=completeness, findings=findings)


def test_opaque_inconclusive_files_are_not_held() -> None:
    assert not _held(scan("clean", "complete"))
    assert not _held(scan("clean", "inconclusive", "format-unknown"))
    assert not _held(scan("clean", "inconclusive", "pickle-frame-overrun", "pickle-invalid"))


def test_real_doubts_are_held() -> None:
    assert _held(scan("clean", "inconclusive", "pickle-divergence"))
    assert _held(scan("suspicious", "complete", "pickle-import"))
    assert _held(scan("malicious", "inconclusive", "pickle-frame-overrun"))
