"""Governance: the license catalog, lineage, the compatibility and obligations check, and license policies."""

from __future__ import annotations

from openckpt.governance.compat import VERDICTS, Ancestor, Finding, Obligation, Report, check
from openckpt.governance.licenses import License, all_licenses, detect_license_text, get_license
from openckpt.governance.lineage import Edge, extract_edges
from openckpt.governance.policy import Policy, load_policy
from openckpt.governance.subject import Subject, read_directory, subject_from_files

__all__ = [
    "VERDICTS",
    "Ancestor",
    "Edge",
    "Finding",
    "License",
    "Obligation",
    "Policy",
    "Report",
    "Subject",
    "all_licenses",
    "check",
    "detect_license_text",
    "extract_edges",
    "get_license",
    "load_policy",
    "read_directory",
    "subject_from_files",
]
