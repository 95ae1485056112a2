"""How the gate reads scan rows (current and of older rules) and what the scan rules of a policy decide for them
(no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from openckpt.errors import LicenseError
from openckpt.governance.policy import combine, load_policy, parse_policy
from openckpt.governance.scan_rules import ScanRules, combine_scan_rules, parse_scan_rules
from openckpt.hub.db.models import Scan
from openckpt.hub.services.gate import verdict_of


def scan(verdict: str, completeness: str, *rules: str, imports: list[str] | None = None, **finding: Any) -> Scan:
    findings = [{"rule": r, "inconclusive": completeness == "inconclusive", **finding} for r in rules]
    return Scan(sha256="0" * 64, rules_version="2", verdict=verdict, completeness=completeness, findings=findings,
                imports=imports or [], runs=[])  # fmt: skip


def test_current_verdicts_are_read_as_they_are() -> None:
    assert verdict_of(scan("needs_code", "complete", "pickle-global", imports=["ultralytics.nn.tasks.DetectionModel"]))\
        == ("needs_code", ["ultralytics.nn.tasks.DetectionModel"])  # fmt: skip
    for verdict in ("clean", "opaque", "inconclusive", "suspicious", "malicious"):
        assert verdict_of(scan(verdict, "complete"))[0] == verdict


def test_scans_of_older_rules_read_as_the_nearest_current_verdict() -> None:
    """Before the ``opaque`` and ``needs_code`` verdicts, opaque bytes were "clean, inconclusive" by a few rules, and a
    class outside the allowlists was "suspicious" with the import as the finding's callable."""
    assert verdict_of(scan("clean", "inconclusive", "format-unknown"))[0] == "opaque"
    assert verdict_of(scan("clean", "inconclusive", "pickle-frame-overrun", "pickle-invalid"))[0] == "opaque"
    assert verdict_of(scan("clean", "inconclusive", "pickle-divergence"))[0] == "inconclusive"
    old = scan("suspicious", "complete", "pickle-global", callable="foo.bar.Baz", severity="suspicious")
    assert verdict_of(old) == ("needs_code", ["foo.bar.Baz"])
    ext = scan("suspicious", "complete", "pickle-global", severity="suspicious")  # an EXT opcode names no import
    assert verdict_of(ext)[0] == "suspicious"
    assert verdict_of(scan("malicious", "inconclusive", "pickle-frame-overrun"))[0] == "malicious"


def test_the_default_rules_withhold_nothing_a_loader_can_handle() -> None:
    rules = ScanRules()
    for verdict in ("clean", "opaque", "needs_code", "inconclusive", "unscanned"):
        assert rules.action(verdict, packages=["pytorch_lightning"]) == "allow", verdict
    assert rules.action("suspicious") == "withhold"


def test_needs_code_follows_the_package_allowlist() -> None:
    rules = parse_scan_rules({"needs_code": "withhold", "allowed_packages": ["PyTorch-Lightning", "torch.nn"]})
    assert rules.allowed_packages == {"pytorch_lightning", "torch.nn"}
    lightning = ["pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"]
    assert rules.action("needs_code", packages=["pytorch_lightning"], classes=lightning) == "allow"
    assert rules.action("needs_code", packages=["ultralytics"], classes=["ultralytics.nn.tasks.DetectionModel"]) \
        == "withhold"  # fmt: skip
    assert rules.action("needs_code", packages=["torch"], classes=["torch.nn.modules.linear.Linear"]) == "allow"
    assert rules.action("needs_code", packages=["torch"], classes=["torch.optim.adam.Adam"]) == "withhold"
    assert rules.action("needs_code", packages=["pytorch_lightning", "ultralytics"]) == "withhold"
    assert rules.action("needs_code") == "withhold"  # names nothing: the rule itself
    assert rules.outside(["pytorch_lightning", "ultralytics"]) == ["ultralytics"]


def test_rules_combine_to_the_stricter_and_round_trip() -> None:
    a = parse_scan_rules({"needs_code": "withhold", "allowed_packages": ["transformers", "timm"]})
    b = parse_scan_rules({"needs_code": "block", "allowed_packages": ["timm"], "unscanned": "withhold"})
    both = combine_scan_rules(a, b, ScanRules())
    assert both.needs_code == "block" and both.allowed_packages == {"timm"} and both.unscanned == "withhold"
    assert combine_scan_rules(a, parse_scan_rules({"inconclusive": "block"})).allowed_packages == a.allowed_packages
    assert combine_scan_rules(a, parse_scan_rules({"needs_code": "withhold"})).allowed_packages is None
    policy = load_policy("require_license: true\nscan:\n  needs_code: withhold\n  allowed_packages: [timm]\n")
    assert parse_policy(policy.to_dict()) == policy
    assert combine(policy, parse_policy({"scan": {"inconclusive": "withhold"}})).scan == ScanRules(
        needs_code="withhold", allowed_packages=frozenset({"timm"}), inconclusive="withhold")  # fmt: skip


@pytest.mark.parametrize("rules", [
    {"needs_code": "maybe"}, {"unscanned": "block"}, {"suspicious": "allow"}, {"allowed_packages": "torch"},
    {"allowed_packages": ["not a package"]}, {"nonsense": "allow"}, ["needs_code"],
])  # fmt: skip
def test_bad_scan_rules_are_refused(rules: Any) -> None:
    with pytest.raises(LicenseError):
        parse_policy({"scan": rules})
