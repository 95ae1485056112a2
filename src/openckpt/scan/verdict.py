"""Findings and verdicts, and how they merge.

A file's verdict is the highest severity among its findings (``info`` findings leave it clean); it is
``inconclusive`` as soon as one finding says part of the file could not be inspected. A report merges files the
same way. Nothing is ever clean by default: a scanner that cannot finish adds an inconclusive finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

__all__ = ["Completeness", "FileResult", "Finding", "ScanReport", "Severity", "Verdict", "merge"]


class Severity(IntEnum):
    """How bad one finding is; ``INFO`` never blocks an upload."""

    INFO = 0
    SUSPICIOUS = 1
    MALICIOUS = 2


class Verdict(StrEnum):
    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"

    @classmethod
    def of(cls, severity: Severity) -> Verdict:
        return (cls.CLEAN, cls.SUSPICIOUS, cls.MALICIOUS)[severity]


class Completeness(StrEnum):
    COMPLETE = "complete"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Finding:
    """One observation: where (file, archive member chain, byte offset), what (callable), why, and how bad.

    ``inconclusive`` marks findings that say part of the content could not be inspected (a limit, an error, an
    encrypted member, a divergence from the real loader); ``count`` is how many identical findings were merged.
    """

    rule: str
    severity: Severity
    reason: str
    file: str = ""
    member: str | None = None
    offset: int | None = None
    callable: str | None = None
    inconclusive: bool = False
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.name.lower(),
            "reason": self.reason,
            "file": self.file,
            "member": self.member,
            "offset": self.offset,
            "callable": self.callable,
            "inconclusive": self.inconclusive,
            "count": self.count,
        }


def merge(findings: list[Finding]) -> tuple[Verdict, Completeness]:
    """The verdict and completeness that a list of findings adds up to."""
    worst = max((f.severity for f in findings), default=Severity.INFO)
    partial = any(f.inconclusive for f in findings)
    return Verdict.of(worst), Completeness.INCONCLUSIVE if partial else Completeness.COMPLETE


@dataclass
class FileResult:
    """The scan of one path: its detected format, findings, verdict, size in bytes and time taken."""

    path: str
    format: str
    findings: list[Finding] = field(default_factory=list)
    size: int = 0
    seconds: float = 0.0

    @property
    def verdict(self) -> Verdict:
        return merge(self.findings)[0]

    @property
    def completeness(self) -> Completeness:
        return merge(self.findings)[1]

    @property
    def clean(self) -> bool:
        """Clean and complete: the only result that lets a file through."""
        return merge(self.findings) == (Verdict.CLEAN, Completeness.COMPLETE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict.value,
            "completeness": self.completeness.value,
            "size": self.size,
            "seconds": round(self.seconds, 6),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class ScanReport:
    """The results of one scan call, one per file; ``exit_code`` is the CLI's (0 clean, 1 findings, 2 inconclusive
    or error)."""

    results: list[FileResult] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def verdict(self) -> Verdict:
        return merge(self.findings)[0]

    @property
    def completeness(self) -> Completeness:
        return merge(self.findings)[1]

    @property
    def clean(self) -> bool:
        return all(r.clean for r in self.results)

    @property
    def exit_code(self) -> int:
        verdict, completeness = merge(self.findings)
        if verdict is not Verdict.CLEAN:
            return 1
        return 2 if completeness is Completeness.INCONCLUSIVE else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "completeness": self.completeness.value,
            "files": [r.to_dict() for r in self.results],
        }
