"""The compatibility engine over a table of lineage scenarios: chains and merges, with their expected verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from openckpt.governance import Ancestor, Subject, check
from openckpt.governance.policy import Policy, combine, evaluate, load_policy

LLAMA31_NOTICE = (
    "Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta Platforms, Inc. All Rights Reserved."
)
GEMMA_NOTICE = "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms"
LLAMA2_NOTICE = (
    "Llama 2 is licensed under the LLAMA 2 Community License, Copyright (c) Meta Platforms, Inc. All Rights Reserved."
)
APACHE_TEXT = "                                 Apache License\n                           Version 2.0, January 2004\n"


@dataclass
class Case:
    name: str
    license: str | None
    ancestors: list[tuple[str, str | None, str]]  # (id, license, relation)
    verdict: str
    codes: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    """Words that must occur in the texts of the pending obligations."""
    model: str = "my-model"
    readme: str = ""
    notice: str | None = None
    license_text: str | None = "license text"
    license_name: str | None = None


A = Case
# fmt: off
CASES = [
    A("no ancestors, apache", "apache-2.0", [], "ok"),
    A("missing license", None, [], "violation", {"missing-license"}),
    A("not a hub id", "apache-3.0", [], "violation", {"unknown-license-id"}),
    A("license unknown", "unknown", [], "needs human review", {"license-unknown"}),
    A("apache base, mit child", "mit", [("org/base", "apache-2.0", "finetune")], "ok"),
    A("apache base, child without LICENSE", "mit", [("org/base", "apache-2.0", "finetune")], "obligations pending",
      pending={"Apache-2.0"}, license_text=None),
    A("mit base, proprietary-ish cc-by-nc child", "cc-by-nc-4.0", [("org/base", "mit", "finetune")], "ok"),
    A("cc-by base credited", "apache-2.0", [("org/base", "cc-by-4.0", "finetune")], "ok",
      readme="Fine-tune of org/base."),
    A("cc-by base not credited", "apache-2.0", [("org/base", "cc-by-4.0", "finetune")], "obligations pending",
      pending={"credit"}),
    A("cc-by-nc base under apache", "apache-2.0", [("org/base", "cc-by-nc-4.0", "finetune")], "violation",
      {"non-commercial-ancestor"}),
    A("cc-by-nc base under cc-by-nc", "cc-by-nc-4.0", [("org/base", "cc-by-nc-4.0", "finetune")], "ok",
      readme="from org/base"),
    A("cc-by-sa base under apache", "apache-2.0", [("org/base", "cc-by-sa-4.0", "finetune")], "violation",
      {"pass-through"}),
    A("cc-by-sa base under cc-by-sa", "cc-by-sa-4.0", [("org/base", "cc-by-sa-4.0", "finetune")], "ok",
      readme="org/base"),
    A("cc-by-sa-4.0 base under gpl-3.0 (one way)", "gpl-3.0", [("org/base", "cc-by-sa-4.0", "finetune")], "ok",
      readme="org/base"),
    A("cc-by-nc-sa base under cc-by-nc-sa", "cc-by-nc-sa-4.0", [("org/base", "cc-by-nc-sa-4.0", "adapter")], "ok",
      readme="org/base"),
    A("cc-by-nc-sa base under cc-by-nc", "cc-by-nc-4.0", [("org/base", "cc-by-nc-sa-4.0", "adapter")], "violation",
      {"pass-through"}, readme="org/base"),
    A("cc-by-nd base fine-tuned", "cc-by-nd-4.0", [("org/base", "cc-by-nd-4.0", "finetune")], "violation",
      {"no-derivatives"}, readme="org/base"),
    A("cc-by-nd base quantized", "cc-by-nd-4.0", [("org/base", "cc-by-nd-4.0", "quantized")], "needs human review",
      {"no-derivatives-quantized"}, readme="org/base"),
    A("cc-by-nc-nd base under apache", "apache-2.0", [("org/base", "cc-by-nc-nd-4.0", "finetune")], "violation",
      {"no-derivatives", "non-commercial-ancestor"}),
    A("openrail base, same family", "creativeml-openrail-m", [("org/sd", "creativeml-openrail-m", "finetune")], "ok"),
    A("openrail base under mit", "mit", [("org/sd", "bigscience-openrail-m", "finetune")], "violation",
      {"pass-through"}),
    A("llama3.1 base, all duties met", "llama3.1", [("meta/Llama-3.1-8B", "llama3.1", "finetune")], "ok",
      model="Llama-3.1-8B-chat-ft", readme="Built with Llama", notice=LLAMA31_NOTICE),
    A("llama3.1 base, no Llama prefix", "llama3.1", [("meta/Llama-3.1-8B", "llama3.1", "finetune")],
      "obligations pending", pending={"name"}, model="chatty-8b", readme="Built with Llama", notice=LLAMA31_NOTICE),
    A("llama3.1 base, no notice or Built with", "llama3.1", [("meta/Llama-3.1-8B", "llama3.1", "adapter")],
      "obligations pending", pending={"NOTICE", "Built with Llama"}, model="Llama-ft"),
    A("llama3 needs the 'Llama 3' prefix", "llama3", [("meta/Meta-Llama-3-8B", "llama3", "finetune")],
      "obligations pending", pending={"Llama 3"}, model="Llama-2-lookalike",
      readme="Built with Meta Llama 3",
      notice="Meta Llama 3 is licensed under the Meta Llama 3 Community License, Copyright © Meta Platforms, Inc. "
      "All Rights Reserved."),
    A("llama3.1 base under apache", "apache-2.0", [("meta/Llama-3.1-8B", "llama3.1", "finetune")], "violation",
      {"pass-through"}, model="Llama-x", readme="Built with Llama", notice=LLAMA31_NOTICE),
    A("llama2 base with notice", "llama2", [("meta/Llama-2-7b", "llama2", "finetune")], "ok", notice=LLAMA2_NOTICE),
    A("gemma base with notice", "gemma", [("google/gemma-2b", "gemma", "finetune")], "ok", notice=GEMMA_NOTICE),
    A("gemma base without notice", "gemma", [("google/gemma-2b", "gemma", "quantized")], "obligations pending",
      pending={"Notice"}),
    A("merge of cc-by-sa and llama", "llama3.1",
      [("org/sa", "cc-by-sa-4.0", "merge"), ("meta/Llama-3.1-8B", "llama3.1", "merge")], "violation",
      {"regimes-conflict", "pass-through"}, model="Llama-merge", readme="Built with Llama org/sa",
      notice=LLAMA31_NOTICE),
    A("merge of cc-by-nc-sa and openrail", "cc-by-nc-sa-4.0",
      [("org/nc", "cc-by-nc-sa-4.0", "merge"), ("org/rail", "openrail", "merge")], "violation",
      {"regimes-conflict"}, readme="org/nc"),
    A("merge of apache and mit under apache", "apache-2.0",
      [("org/a", "apache-2.0", "merge"), ("org/b", "mit", "merge")], "ok"),
    A("merge with an nc parent under mit", "mit",
      [("org/a", "apache-2.0", "merge"), ("org/b", "cc-by-nc-4.0", "merge")], "violation",
      {"non-commercial-ancestor"}, readme="org/b"),
    A("chain: nc grandparent under apache", "apache-2.0",
      [("org/parent", "apache-2.0", "finetune"), ("org/grand", "cc-by-nc-4.0", "finetune")], "violation",
      {"non-commercial-ancestor"}, readme="org/grand"),
    A("chain: llama3.1 grandparent, child keeps llama", "llama3.1",
      [("org/Llama-ft", "llama3.1", "finetune"), ("meta/Llama-3.1-8B", "llama3.1", "finetune")], "ok",
      model="Llama-ft-2", readme="Built with Llama", notice=LLAMA31_NOTICE),
    A("external base of unknown license", "apache-2.0", [("https://other.hub/x/y", None, "finetune")],
      "needs human review", {"ancestor-license-unknown"}),
    A("base licensed other", "apache-2.0", [("org/base", "other", "finetune")], "needs human review",
      {"ancestor-license-unknown"}),
    A("research-only base under cc-by-nc", "cc-by-nc-4.0", [("org/base", "fair-noncommercial-research-license",
      "finetune")], "needs human review", {"ancestor-needs-review"}),
    A("research-only base under apache", "apache-2.0", [("org/base", "deepfloyd-if-license", "finetune")],
      "violation", {"non-commercial-ancestor", "ancestor-needs-review"}),
    A("other + Apache LICENSE text is apache", "other", [("org/base", "cc-by-sa-4.0", "finetune")], "violation",
      {"pass-through"}, license_name="my-apache", license_text=APACHE_TEXT, readme="org/base"),
    A("other + unrecognised text", "other", [], "needs human review", {"license-other"},
      license_name="acme-1.0", license_text="ACME model license: be nice."),
    A("other without license_name", "other", [], "violation", {"other-without-name"}, license_text=APACHE_TEXT),
    A("gpl base under apache", "apache-2.0", [("org/base", "gpl-3.0", "finetune")], "violation", {"pass-through"}),
    A("mpl base under apache", "apache-2.0", [("org/base", "mpl-2.0", "finetune")], "needs human review",
      {"ancestor-needs-review"}),
]
# fmt: on


def test_there_are_enough_scenarios() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_scenario(case: Case) -> None:
    subject = Subject(name=case.model, license=case.license, license_name=case.license_name,
                      license_text=case.license_text, notice=case.notice, readme=case.readme)  # fmt: skip
    ancestors = [Ancestor(i, lic, rel, depth=1 + n) for n, (i, lic, rel) in enumerate(case.ancestors)]
    report = check(subject, ancestors)
    codes = {f.code for f in report.findings}
    assert report.verdict == case.verdict, report.to_dict()
    assert case.codes <= codes, codes
    pending = " ".join(o.text + " " + o.clause for o in report.pending)
    for word in case.pending:
        assert word in pending, pending
    for f in report.findings:
        assert f.clause and f.message
    for o in report.obligations:
        assert o.clause, o


def test_every_obligation_names_its_clause_and_license() -> None:
    report = check(Subject(name="x", license="llama3.2"), [Ancestor("meta/Llama-3.2-1B", "llama3.2")])
    texts = {o.text: o for o in report.obligations}
    assert any("EU" in t for t in texts), texts
    notice = next(o for o in report.obligations if "NOTICE" in o.text)
    assert "Llama 3.2 is licensed under the Llama 3.2 Community License" in notice.text
    assert notice.clause == "Llama 3.2 Community License Agreement §1.b.iii"


def test_apache_notice_kept_only_when_the_base_has_one() -> None:
    subject = Subject(name="x", license="apache-2.0", license_text="t")
    with_notice = check(subject, [Ancestor("o/b", "apache-2.0", has_notice=True)])
    assert with_notice.verdict == "obligations pending"
    assert check(subject, [Ancestor("o/b", "apache-2.0", has_notice=False)]).verdict == "ok"
    unknown = check(subject, [Ancestor("o/b", "apache-2.0")])
    assert unknown.verdict == "ok" and any(o.status == "manual" and "NOTICE" in o.text for o in unknown.obligations)


# ---- policies -------------------------------------------------------------------------------------------------


def test_policy_allowed_licenses_cover_ancestors() -> None:
    policy = load_policy("allowed_licenses: [apache-2.0, mit]\n")
    report = check(Subject(name="x", license="apache-2.0", license_text="t"), [Ancestor("o/b", "cc-by-4.0")])
    findings = evaluate(policy, report)
    assert [f.code for f in findings] == ["policy-license-not-allowed"] and findings[0].ancestor == "o/b"
    assert report.with_findings(findings).verdict == "violation"


def test_policy_block_incompatible_and_require_license() -> None:
    policy = load_policy("block_incompatible: true\nrequire_license: true\n")
    bad = check(Subject(name="x", license="apache-2.0"), [Ancestor("o/b", "cc-by-nc-4.0")])
    assert "cc-by-nc-4.0" in evaluate(policy, bad)[0].message
    missing = check(Subject(name="x", license=None), [])
    assert {f.code for f in evaluate(policy, missing)} == {"policy-license-required", "policy-incompatible"}
    fine = check(Subject(name="x", license="mit", license_text="t"), [])
    assert evaluate(policy, fine) == []


def test_policy_scan_and_signature_results_missing_mean_not_met() -> None:
    policy = Policy(require_clean_scan=True, require_signature=True)
    report = check(Subject(name="x", license="mit", license_text="t"), [])
    messages = [f.message for f in evaluate(policy, report)]
    assert "scan results unavailable → treated as not clean" in messages[0]
    assert "signature" in messages[1]
    assert evaluate(policy, report, scan_clean=True, signature_valid=True) == []


def test_policy_combine_is_strictest_and_bad_policies_are_refused() -> None:
    from openckpt.errors import LicenseError

    a = load_policy("allowed_licenses: [apache-2.0, mit]\nrequire_license: true\n")
    b = load_policy("allowed_licenses: [mit, gemma]\nblock_incompatible: true\n")
    both = combine(a, b)
    assert both.allowed_licenses == {"mit"} and both.require_license and both.block_incompatible
    for text in ("nonsense: true\n", "allowed_licenses: [apache-3]\n", "require_license: maybe\n", "- a\n"):
        with pytest.raises(LicenseError):
            load_policy(text)
