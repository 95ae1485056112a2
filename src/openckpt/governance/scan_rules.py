"""What a policy does with files by their scan verdict: the ``scan`` rules of an organisation's (or the hub's) policy.

The rules, as YAML or JSON under a policy's ``scan`` key::

    scan:
      needs_code: withhold          # allow | withhold | block: files whose loading constructs third-party classes
      allowed_packages: [pytorch_lightning, ultralytics]   # ...except those needing only these packages
      inconclusive: allow           # allow | withhold | block: a code path the scanner could not follow
      unscanned: withhold           # allow | withhold: no scan with the current rules yet (pending or rules changed)
      suspicious: withhold          # withhold | block: built to mislead a scanner or a loader (polyglots, ...)

``withhold`` stores the file and refuses its downloads until the repo's owner or a hub admin releases it; ``block``
refuses the commit that adds it. Malicious files are always refused, and clean and opaque files always pass: no rule
names them. Every rule defaults to ``allow``, but ``suspicious``, which defaults to ``withhold``. Entries of
``allowed_packages`` are top-level packages or dotted module prefixes (``transformers``, ``torch.nn``): a "needs
code" file is allowed when each class it constructs lies under one of them. Rules combine by taking the stricter of
each (allowlists intersect).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from openckpt.errors import LicenseError

__all__ = ["ACTIONS", "ScanRules", "combine_scan_rules", "parse_scan_rules"]

ACTIONS = ("allow", "withhold", "block")
"""From the most lenient to the strictest."""
_RULES = {"needs_code": ACTIONS, "inconclusive": ACTIONS, "unscanned": ACTIONS[:2], "suspicious": ACTIONS[1:]}
_DEFAULTS = {"needs_code": "allow", "inconclusive": "allow", "unscanned": "allow", "suspicious": "withhold"}
_MODULE = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*")


def _package(name: str) -> str:
    """``PyTorch-Lightning`` → ``pytorch_lightning``: a distribution's name as the module it installs."""
    return name.strip().lower().replace("-", "_")


def _stricter(a: str, b: str) -> str:
    return a if ACTIONS.index(a) >= ACTIONS.index(b) else b


@dataclass(frozen=True)
class ScanRules:
    needs_code: str = "allow"
    allowed_packages: frozenset[str] | None = None
    """Packages (or module prefixes) whose classes ``needs_code`` lets through; None: no exception."""
    inconclusive: str = "allow"
    unscanned: str = "allow"
    suspicious: str = "withhold"

    @property
    def empty(self) -> bool:
        return self == ScanRules()

    def to_dict(self) -> dict[str, Any]:
        allowed = sorted(self.allowed_packages) if self.allowed_packages is not None else None
        return {
            "needs_code": self.needs_code,
            "allowed_packages": allowed,
            "inconclusive": self.inconclusive,
            "unscanned": self.unscanned,
            "suspicious": self.suspicious,
        }

    def outside(self, packages: Iterable[str], classes: Iterable[str] = ()) -> list[str]:
        """The packages of ``packages`` (and modules of ``classes``, dotted ``module.Class`` names) that the allowlist
        does not cover, sorted."""
        allowed = self.allowed_packages or frozenset()

        def covered(module: str) -> bool:
            module = _package(module)
            return any(module == a or module.startswith(a + ".") for a in allowed)

        classes = [c for c in classes if "." in c]
        named = {_package(c.partition(".")[0]) for c in classes}  # packages judged by their classes
        found = {p for p in packages if _package(p) not in named and not covered(p)}
        found |= {c.partition(".")[0] for c in classes if not covered(c.rpartition(".")[0])}
        return sorted(found)

    def action(self, verdict: str, *, packages: Iterable[str] = (), classes: Iterable[str] = ()) -> str:
        """``allow``, ``withhold`` or ``block`` for a file of ``verdict`` (``needs_code``, ``inconclusive``,
        ``unscanned`` or ``suspicious``; any other verdict is not the policy's to decide: ``allow``)."""
        if verdict == "needs_code":
            packages, classes = list(packages), list(classes)
            named = packages or classes  # a file that names no package gets the rule itself
            return "allow" if named and not self.outside(packages, classes) else self.needs_code
        if verdict == "inconclusive":
            return self.inconclusive
        if verdict in ("unscanned", "suspicious"):
            return str(getattr(self, verdict))
        return "allow"


def parse_scan_rules(data: Any) -> ScanRules:
    """Scan rules from their parsed YAML or JSON (None: the defaults); bad values are a :class:`LicenseError`."""
    if data is None:
        return ScanRules()
    if not isinstance(data, Mapping):
        raise LicenseError("scan rules are a mapping (needs_code, allowed_packages, inconclusive, unscanned, ...)")
    unknown = set(data) - {"allowed_packages", *_RULES}
    if unknown:
        raise LicenseError(f"unknown scan rules: {', '.join(sorted(map(str, unknown)))}")
    values: dict[str, str] = {}
    for key, allowed in _RULES.items():
        value = data.get(key) or _DEFAULTS[key]
        if value not in allowed:
            raise LicenseError(f"scan.{key} must be one of {', '.join(allowed)}, not {value!r}")
        values[key] = value
    packages = data.get("allowed_packages")
    if packages is not None:
        if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
            raise LicenseError("scan.allowed_packages must be a list of package names")
        bad = [p for p in packages if not _MODULE.fullmatch(_package(p))]
        if bad:
            raise LicenseError(f"scan.allowed_packages: not package or module names: {', '.join(bad)}")
    return ScanRules(allowed_packages=frozenset(map(_package, packages)) if packages is not None else None, **values)


def combine_scan_rules(*rules: ScanRules) -> ScanRules:
    """The stricter of each rule; the allowlist is what every allowlist of a non-``allow`` ``needs_code`` rule
    shares (one such rule without a list leaves none)."""
    values = dict(_DEFAULTS)
    lists: list[frozenset[str] | None] = []
    for r in rules:
        values = {k: _stricter(v, getattr(r, k)) for k, v in values.items()}
        if r.needs_code != "allow":
            lists.append(r.allowed_packages)
    allowed: frozenset[str] | None = None
    if lists and all(item is not None for item in lists):
        allowed = frozenset.intersection(*(item for item in lists if item is not None))
    return ScanRules(allowed_packages=allowed, **values)
