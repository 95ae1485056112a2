"""Limits no real model reaches, and the per-file scan context that enforces them.

Reaching a limit never makes a file clean: it adds an inconclusive finding and the scan of that part stops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from openckpt.scan.verdict import Finding, Severity

__all__ = ["Context", "LimitError", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Caps on what one scan may walk through; the defaults are far above any real checkpoint."""

    max_entries: int = 100_000
    """Members of one archive."""
    max_ratio: float = 100.0
    """Uncompressed / compressed size of one member (checked for members over ``ratio_floor`` bytes)."""
    ratio_floor: int = 1 << 20
    max_unpacked: int = 16 << 30
    """Bytes decompressed in total for one file."""
    max_depth: int = 8
    """Containers nested in containers (zip in tar in gzip ...)."""
    max_opcodes: int = 50_000_000
    """Opcodes of one pickle stream."""
    max_memo: int = 5_000_000
    """Memo entries of one pickle stream."""
    max_stack: int = 1_000_000
    """Items on the pickle stack, and MARK nesting."""
    max_streams: int = 1_000
    """Pickle streams in one file or member."""
    max_findings: int = 1_000
    """Distinct findings kept for one file (more are counted, not listed)."""
    time_budget: float = 120.0
    """Seconds for one top-level path."""


class LimitError(Exception):
    """Raised inside a scanner to abandon the part being scanned; the finding is already recorded."""


@dataclass
class Context:
    """What scanners of one top-level file share: its name, limits, deadline and findings."""

    file: str
    limits: Limits = field(default_factory=Limits)
    findings: list[Finding] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)
    """Globals outside the loader's allowlist that loading would import (``module.qualname``)."""
    runs: set[str] = field(default_factory=set)
    """Loaders that would run a program stored in the file (``torch.jit.load``)."""
    unpacked: int = 0
    deadline: float = 0.0
    _seen: dict[tuple[object, ...], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.limits.time_budget

    def add(
        self,
        rule: str,
        severity: Severity,
        reason: str,
        *,
        member: str | None = None,
        offset: int | None = None,
        callable: str | None = None,
        inconclusive: bool = False,
    ) -> None:
        """Record a finding; an identical one (same rule, member, callable, reason) only raises its count."""
        key = (rule, severity, reason, member, callable, inconclusive)
        index = self._seen.get(key)
        if index is not None:
            old = self.findings[index]
            self.findings[index] = Finding(**{**old.__dict__, "count": old.count + 1})
            return
        if len(self.findings) >= self.limits.max_findings:
            # past the cap, keep only what would change the verdict or the completeness
            worst = max(f.severity for f in self.findings)
            partial = any(f.inconclusive for f in self.findings)
            if severity <= worst and (partial or not inconclusive):
                return
        self._seen[key] = len(self.findings)
        self.findings.append(
            Finding(rule, severity, reason, self.file, member, offset, callable, inconclusive=inconclusive)
        )

    def limit(self, what: str, *, member: str | None = None, offset: int | None = None) -> LimitError:
        """Record that a limit was reached (inconclusive) and return the exception to raise."""
        self.add("limit", Severity.INFO, f"limit reached: {what}", member=member, offset=offset, inconclusive=True)
        return LimitError(what)

    def check_time(self, member: str | None = None) -> None:
        if time.monotonic() > self.deadline:
            raise self.limit(f"time budget of {self.limits.time_budget:g} s", member=member)

    def unpack(self, n: int, member: str | None = None) -> None:
        """Account for ``n`` decompressed bytes."""
        self.unpacked += n
        if self.unpacked > self.limits.max_unpacked:
            raise self.limit(f"more than {self.limits.max_unpacked} bytes decompressed", member=member)
