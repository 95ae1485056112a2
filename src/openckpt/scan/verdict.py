"""Findings and verdicts, and how they merge.

A file's verdict says what loading it would run, worst first: ``malicious`` (a known code-execution, process,
file, network or import gadget is reachable), ``suspicious`` (built to mislead a scanner or a loader: polyglots,
zip names that differ, archive traversal, malformed safetensors/GGUF headers), ``inconclusive`` (a code path exists
and could not be followed), ``needs_code`` (loading constructs classes of named third-party packages, listed in
:attr:`FileResult.imports` and :attr:`FileResult.packages`, or runs a program such as TorchScript, listed in
:attr:`FileResult.runs`), ``opaque`` (no loader in use executes anything from it: raw float weights, unknown
binaries) and ``clean`` (fully understood, runs nothing). It is the worst finding's; an inconclusive finding makes
it at least ``inconclusive``. A report merges files the same way. Nothing is clean by default: a scanner that
cannot finish adds an inconclusive finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

__all__ = ["Completeness", "FileResult", "Finding", "ScanReport", "Severity", "Verdict", "merge", "packages_of"]


class Severity(IntEnum):
    """What one finding means for the file's verdict (see :class:`Verdict`); ``INFO`` changes nothing."""

    INFO = 0
    OPAQUE = 1
    NEEDS_CODE = 2
    SUSPICIOUS = 3
    MALICIOUS = 4


class Verdict(StrEnum):
    """A file's verdict, least severe first; :attr:`rank` orders them."""

    CLEAN = "clean"
    OPAQUE = "opaque"
    NEEDS_CODE = "needs_code"
    INCONCLUSIVE = "inconclusive"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def runs_nothing(self) -> bool:
        """Clean or opaque: loading it executes nothing from it."""
        return self in (Verdict.CLEAN, Verdict.OPAQUE)

    @classmethod
    def of(cls, severity: Severity, *, inconclusive: bool = False) -> Verdict:
        verdict = _OF[severity]
        return cls.INCONCLUSIVE if inconclusive and verdict.rank < _RANK[cls.INCONCLUSIVE] else verdict


_OF = {
    Severity.INFO: Verdict.CLEAN,
    Severity.OPAQUE: Verdict.OPAQUE,
    Severity.NEEDS_CODE: Verdict.NEEDS_CODE,
    Severity.SUSPICIOUS: Verdict.SUSPICIOUS,
    Severity.MALICIOUS: Verdict.MALICIOUS,
}
_RANK = {v: i for i, v in enumerate(Verdict)}


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
    return Verdict.of(worst, inconclusive=partial), Completeness.INCONCLUSIVE if partial else Completeness.COMPLETE


def packages_of(imports: list[str]) -> list[str]:
    """The top-level import packages of ``module.qualname`` names (``ultralytics``, ``pytorch_lightning``)."""
    return sorted({name.split(".", 1)[0] for name in imports})


@dataclass
class FileResult:
    """The scan of one path: its detected format, findings, verdict, size in bytes and time taken.

    ``imports``: every global outside its loader's allowlist that loading would import, as ``module.qualname``
    (the Hub's "Detected Pickle imports", minus the allowlisted ones); ``runs``: programs loading would execute
    besides those imports, named by the loader that runs them (``torch.jit.load`` for TorchScript);
    ``packages``: the top-level packages of both, sorted.
    """

    path: str
    format: str
    findings: list[Finding] = field(default_factory=list)
    size: int = 0
    seconds: float = 0.0
    imports: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def packages(self) -> list[str]:
        return packages_of(self.imports + self.runs)

    @property
    def verdict(self) -> Verdict:
        return merge(self.findings)[0]

    @property
    def completeness(self) -> Completeness:
        return merge(self.findings)[1]

    @property
    def clean(self) -> bool:
        """Clean or opaque (hence complete): loading it runs nothing from it."""
        return self.verdict.runs_nothing

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict.value,
            "completeness": self.completeness.value,
            "imports": list(self.imports),
            "packages": self.packages,
            "runs": list(self.runs),
            "size": self.size,
            "seconds": round(self.seconds, 6),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class ScanReport:
    """The results of one scan call, one per file; ``exit_code`` is the CLI's: 1 if a file is malicious or
    suspicious, else 2 if one is inconclusive, else 0 (clean, opaque, needs_code)."""

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
        """Every file runs nothing when loaded (clean or opaque)."""
        return all(r.clean for r in self.results)

    @property
    def packages(self) -> list[str]:
        return sorted({p for r in self.results for p in r.packages})

    @property
    def exit_code(self) -> int:
        verdict = max((r.verdict for r in self.results), key=lambda v: v.rank, default=Verdict.CLEAN)
        if verdict in (Verdict.MALICIOUS, Verdict.SUSPICIOUS):
            return 1
        return 2 if verdict is Verdict.INCONCLUSIVE else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "completeness": self.completeness.value,
            "packages": self.packages,
            "files": [r.to_dict() for r in self.results],
        }
