"""Compatibility and obligations: may this revision carry its license, given every ancestor's, and what is still owed?

A pure function of the revision (:class:`~openckpt.governance.subject.Subject`) and its ancestors (with their
licenses, when known). Rules (docs licenses.md): commercial use only if every ancestor allows it; a share-alike or
pass-through ancestor's regime must be kept; two different regimes cannot both be kept; no-derivatives ancestors
block distribution (a quantization needs review); an unknown license needs a person; obligations accumulate along
the chain. Verdicts, worst first: ``violation``, ``needs human review``, ``obligations pending``, ``ok``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from openckpt.governance.licenses import License, ObligationRule, detect_license_text, get_license
from openckpt.governance.subject import Subject

__all__ = ["VERDICTS", "Ancestor", "Finding", "Obligation", "Report", "check"]

VERDICTS = ("ok", "obligations pending", "needs human review", "violation")
Level = Literal["violation", "review"]


@dataclass(frozen=True)
class Ancestor:
    """A model the subject derives from, directly (``depth`` 1) or through ``via`` (its child on the path)."""

    id: str
    license: str | None
    relation: str = "finetune"
    local: bool = False
    depth: int = 1
    via: str | None = None
    has_notice: bool | None = None
    """Whether the ancestor ships a NOTICE file; None when not known (an external ancestor)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "license": self.license,
            "relation": self.relation,
            "local": self.local,
            "depth": self.depth,
            "via": self.via,
            "has_notice": self.has_notice,
        }


@dataclass(frozen=True)
class Finding:
    level: Level
    code: str
    message: str
    clause: str
    ancestor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "code": self.code,
            "message": self.message,
            "clause": self.clause,
            "ancestor": self.ancestor,
        }


@dataclass(frozen=True)
class Obligation:
    """A duty toward an ancestor's license: ``met``, ``pending`` (checked and not met) or ``manual`` (a person must
    see to it: only those that cannot be checked from the files)."""

    text: str
    clause: str
    license: str
    ancestor: str
    status: Literal["met", "pending", "manual"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "clause": self.clause,
            "license": self.license,
            "ancestor": self.ancestor,
            "status": self.status,
        }


@dataclass(frozen=True)
class Report:
    verdict: str
    license: str | None
    """The effective license: the declared id, or the one recognised in the LICENSE file of ``license: other``."""
    findings: tuple[Finding, ...]
    obligations: tuple[Obligation, ...]
    ancestors: tuple[Ancestor, ...] = ()
    subject: Subject | None = field(default=None, compare=False)

    @property
    def pending(self) -> list[Obligation]:
        return [o for o in self.obligations if o.status == "pending"]

    def with_findings(self, extra: Iterable[Finding]) -> Report:
        """This report with more findings (a policy's), its verdict recomputed."""
        findings = (*self.findings, *extra)
        return replace(self, findings=findings, verdict=_verdict(findings, self.obligations))

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "license": self.license,
            "findings": [f.to_dict() for f in self.findings],
            "obligations": [o.to_dict() for o in self.obligations],
            "ancestors": [a.to_dict() for a in self.ancestors],
            "subject": self.subject.to_dict() if self.subject is not None else None,
        }


def _verdict(findings: Sequence[Finding], obligations: Sequence[Obligation]) -> str:
    if any(f.level == "violation" for f in findings):
        return "violation"
    if findings:
        return "needs human review"
    return "obligations pending" if any(o.status == "pending" for o in obligations) else "ok"


def _norm(text: str) -> str:
    text = text.replace("©", "(c)").replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip().lower()


def _compact(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.lower())


def _effective(subject: Subject, findings: list[Finding]) -> License | None:
    """The subject's license from the catalog, adding the findings that its declaration calls for."""
    declared = subject.license
    clause = "model card: license field (Hub license ids)"
    if not declared:
        findings.append(Finding("violation", "missing-license", "the card declares no license", clause))
        return None
    lic = get_license(declared)
    if lic is None:
        findings.append(
            Finding("violation", "unknown-license-id", f"{declared!r} is not a license id the Hub accepts", clause)
        )
        return None
    if lic.id == "unknown":
        findings.append(Finding("review", "license-unknown", "the card's license is 'unknown'", clause))
        return None
    if lic.id != "other":
        return lic
    if not subject.license_name:
        findings.append(
            Finding(
                "violation",
                "other-without-name",
                "license: other needs license_name and license_link (a LICENSE file or a URL)",
                "model card: license_name / license_link",
            )
        )
    detected = detect_license_text(subject.license_text) if subject.license_text else None
    if detected is not None:
        return get_license(detected)
    what = "the license file is not a known license text" if subject.license_text else "no license text in the repo"
    findings.append(
        Finding(
            "review",
            "license-other",
            f"license: other ({subject.license_name or '?'}): {what}; needs human review",
            "model card: license_name / license_link",
        )
    )
    return None


def _satisfies(base: License, child: License) -> bool:
    """Whether ``child``'s terms keep ``base``'s pass-through regime (CC BY-SA 4.0 → GPL-3.0 one way)."""
    if child.regime == base.regime:
        return True
    return base.id == "cc-by-sa-4.0" and child.id == "gpl-3.0"


def _status(rule: ObligationRule, lic: License, ancestor: Ancestor, subject: Subject) -> str | None:
    readme = subject.readme.lower()
    if rule.check == "license_file":
        return "met" if subject.has_license_file else "pending"
    if rule.check == "notice_file":
        return "met" if lic.notice and subject.notice and _norm(lic.notice) in _norm(subject.notice) else "pending"
    if rule.check == "notice_kept":
        if ancestor.has_notice is None:
            return "manual"
        return None if not ancestor.has_notice else "met" if subject.notice else "pending"
    if rule.check == "attribution":
        short = ancestor.id.rstrip("/").rsplit("/", 1)[-1].lower()
        return "met" if ancestor.id.lower() in readme or (short and short in readme) else "pending"
    if rule.check == "built_with":
        return "met" if lic.built_with and lic.built_with.lower() in readme else "pending"
    if rule.check == "naming":
        prefix = _compact(lic.naming_prefix or "")
        return "met" if _compact(subject.name).startswith(prefix) else "pending"
    return "manual"


def _check_ancestor(a: Ancestor, lic: License | None, eff: License | None, findings: list[Finding]) -> None:
    if lic is None or lic.id in ("unknown", "other"):
        stated = f"license {a.license!r}" if a.license else "no known license"
        findings.append(
            Finding(
                "review",
                "ancestor-license-unknown",
                f"ancestor {a.id} has {stated}: needs human "
                "review (state it in the card's base_model_license if you know it)",
                "licenses.md: other, unknown → human review",
                a.id,
            )
        )
        return
    if lic.commercial is False and eff is not None and eff.commercial is True:
        findings.append(
            Finding(
                "violation",
                "non-commercial-ancestor",
                f"ancestor {a.id} is {lic.id} (no commercial "
                f"use) but this model is licensed {eff.id}, which allows commercial use",
                f"{lic.name}: non-commercial terms",
                a.id,
            )
        )
    if lic.derivatives == "no-distribution":
        if a.relation == "quantized":
            findings.append(
                Finding(
                    "review",
                    "no-derivatives-quantized",
                    f"ancestor {a.id} is {lic.id}: whether a "
                    "quantization is a mere technical modification needs review",
                    f"{lic.name} §2(a)(4)",
                    a.id,
                )
            )
        else:
            findings.append(
                Finding(
                    "violation",
                    "no-derivatives",
                    f"ancestor {a.id} is {lic.id}: adapted material may not be shared",
                    f"{lic.name} §2(a)(1)(B)",
                    a.id,
                )
            )
    elif lic.derivatives == "same-regime" and eff is not None and not _satisfies(lic, eff):
        findings.append(
            Finding(
                "violation",
                "pass-through",
                f"ancestor {a.id} is {lic.id}, whose {lic.regime} terms "
                f"pass through to derivatives, but this model is licensed {eff.id}",
                f"{lic.name}: share-alike / pass-through terms",
                a.id,
            )
        )
    elif lic.derivatives == "review" and (eff is None or eff.id != lic.id):
        kind = "research-only" if lic.research_only else "terms vary"
        findings.append(
            Finding(
                "review",
                "ancestor-needs-review",
                f"ancestor {a.id} is {lic.id} ({kind}): a person must read its terms for derivatives",
                lic.name,
                a.id,
            )
        )


def check(subject: Subject, ancestors: Sequence[Ancestor]) -> Report:
    """The verdict on ``subject`` given its ancestors (each with its license, None when not known)."""
    findings: list[Finding] = []
    eff = _effective(subject, findings)
    obligations: dict[tuple[str, str, str], Obligation] = {}
    regimes: dict[str, License] = {}
    for a in ancestors:
        lic = get_license(a.license)
        _check_ancestor(a, lic, eff, findings)
        if lic is None:
            continue
        if lic.derivatives == "same-regime" and lic.regime:
            regimes.setdefault(lic.regime, lic)
        for rule in lic.obligations:
            status = _status(rule, lic, a, subject)
            key = (rule.check, rule.text, a.id if rule.check in ("attribution", "notice_kept") else lic.id)
            if status is not None and key not in obligations:
                text = f'{rule.text}: "{lic.notice}"' if rule.check == "notice_file" and lic.notice else rule.text
                obligations[key] = Obligation(text, rule.clause, lic.id, a.id, status)  # type: ignore[arg-type]
    if len(regimes) > 1 and not (eff is not None and all(_satisfies(r, eff) for r in regimes.values())):
        names = ", ".join(f"{r} ({lic.id})" for r, lic in regimes.items())
        findings.append(
            Finding(
                "violation",
                "regimes-conflict",
                f"ancestors under different pass-through regimes cannot all be kept: {names}",
                "licenses.md: chains and merges",
            )
        )
    found = tuple(obligations.values())
    return Report(_verdict(findings, found), eff.id if eff else None, tuple(findings), found, tuple(ancestors), subject)
