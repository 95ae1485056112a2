"""Organisation license policies: which licenses may be used, and what a commit must satisfy to be published.

A policy is a YAML mapping::

    allowed_licenses: [apache-2.0, mit, llama3.1]   # the model's license and every ancestor's must be listed
    require_license: true                           # the card must declare a license
    block_incompatible: true                        # refuse a model whose license check finds a violation
    require_clean_scan: false                       # every file must have a clean, complete scan
    require_signature: false                        # the revision must carry a signature the hub verified
    scan:                                           # what files of each scan verdict get (scan_rules.py)
      needs_code: withhold
      allowed_packages: [transformers]

Policies combine by taking the stricter of each rule (the server's default and an organisation's both apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from openckpt.errors import LicenseError
from openckpt.governance.compat import Finding, Report
from openckpt.governance.licenses import get_license
from openckpt.governance.scan_rules import ScanRules, combine_scan_rules, parse_scan_rules

__all__ = ["Policy", "combine", "evaluate", "load_policy", "parse_policy"]

_FLAGS = ("require_license", "block_incompatible", "require_clean_scan", "require_signature")


@dataclass(frozen=True)
class Policy:
    allowed_licenses: frozenset[str] | None = None
    """None: every license is allowed."""
    require_license: bool = False
    block_incompatible: bool = False
    require_clean_scan: bool = False
    require_signature: bool = False
    scan: ScanRules = field(default_factory=ScanRules)
    """What files get by their scan verdict (withheld, refused); the default lets every non-malicious file through."""

    @property
    def empty(self) -> bool:
        return self == Policy()

    def to_dict(self) -> dict[str, Any]:
        allowed = sorted(self.allowed_licenses) if self.allowed_licenses is not None else None
        return {"allowed_licenses": allowed, **{k: getattr(self, k) for k in _FLAGS}, "scan": self.scan.to_dict()}


def parse_policy(data: Any) -> Policy:
    """A policy from its parsed YAML or JSON; unknown keys and license ids are a :class:`LicenseError`."""
    if data is None:
        return Policy()
    if not isinstance(data, Mapping):
        raise LicenseError("a policy is a mapping of rules (allowed_licenses, require_license, ...)")
    unknown = set(data) - {"allowed_licenses", "scan", *_FLAGS}
    if unknown:
        raise LicenseError(f"unknown policy rules: {', '.join(sorted(map(str, unknown)))}")
    allowed = data.get("allowed_licenses")
    if allowed is not None:
        if not isinstance(allowed, list) or not all(isinstance(i, str) for i in allowed):
            raise LicenseError("allowed_licenses must be a list of license ids")
        bad = [i for i in allowed if get_license(i) is None]
        if bad:
            raise LicenseError(f"not license ids the Hub accepts: {', '.join(bad)}")
    for key in _FLAGS:
        if not isinstance(data.get(key, False), bool):
            raise LicenseError(f"{key} must be true or false")
    return Policy(
        allowed_licenses=frozenset(i.lower() for i in allowed) if allowed is not None else None,
        **{k: bool(data.get(k, False)) for k in _FLAGS},
        scan=parse_scan_rules(data.get("scan")),
    )


def load_policy(source: Path | str) -> Policy:
    """A policy from a YAML file (a :class:`~pathlib.Path`) or YAML text (a ``str``)."""
    try:
        text = source.read_text("utf-8") if isinstance(source, Path) else source
        return parse_policy(yaml.safe_load(text))
    except (OSError, yaml.YAMLError) as e:
        raise LicenseError(f"cannot read the policy: {e}") from e


def combine(*policies: Policy) -> Policy:
    """The stricter of each rule of ``policies``."""
    allowed: frozenset[str] | None = None
    for p in policies:
        if p.allowed_licenses is not None:
            allowed = p.allowed_licenses if allowed is None else allowed & p.allowed_licenses
    flags = {k: any(getattr(p, k) for p in policies) for k in _FLAGS}
    return Policy(allowed_licenses=allowed, **flags, scan=combine_scan_rules(*(p.scan for p in policies)))


def evaluate(
    policy: Policy,
    report: Report,
    *,
    scan_clean: bool | None = None,
    signature_valid: bool | None = None,
    scan_note: str = "",
    signature_note: str = "",
) -> list[Finding]:
    """The rules of ``policy`` that ``report`` breaks, as violations. ``scan_clean`` / ``signature_valid`` None
    means the result is not available, which fails a rule that requires it (``*_note`` says why)."""
    out: list[Finding] = []
    clause = "organisation policy"
    if policy.require_license and any(f.code == "missing-license" for f in report.findings):
        out.append(Finding("violation", "policy-license-required", "the policy requires a license in the card", clause))
    if policy.allowed_licenses is not None:
        used = [("this model", report.license or (report.subject.license if report.subject else None))]
        used += [(a.id, a.license) for a in report.ancestors]
        for who, lic in used:
            if lic is None or lic.lower() not in policy.allowed_licenses:
                out.append(
                    Finding(
                        "violation",
                        "policy-license-not-allowed",
                        f"{who}: license {lic or 'unknown'} is not allowed by the policy",
                        clause,
                        None if who == "this model" else who,
                    )
                )
    if policy.block_incompatible and report.verdict == "violation":
        out.append(
            Finding(
                "violation",
                "policy-incompatible",
                "the policy blocks derivatives whose license is "
                "incompatible with their ancestors': "
                + "; ".join(f.message for f in report.findings if f.level == "violation"),
                clause,
            )
        )
    if policy.require_clean_scan and scan_clean is not True:
        why = scan_note or ("scan results unavailable → treated as not clean" if scan_clean is None else "not clean")
        out.append(Finding("violation", "policy-scan", f"the policy requires a clean scan: {why}", clause))
    if policy.require_signature and signature_valid is not True:
        why = signature_note or (
            "signature results unavailable → treated as not signed" if signature_valid is None else "no valid signature"
        )
        out.append(Finding("violation", "policy-signature", f"the policy requires a valid signature: {why}", clause))
    return out
