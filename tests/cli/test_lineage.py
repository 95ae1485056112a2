"""``openckpt lineage verify`` on directories, and ``openckpt diff --base``: verdicts, figures, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from openckpt.cli.lineage import EXIT_UNVERIFIABLE
from tests.governance.lineage_models import OWNER, Family, card, family

from .helpers import Invoke


@pytest.fixture(scope="module")
def fam(tmp_path_factory: pytest.TempPathFactory) -> Family:
    return family(tmp_path_factory)


def _bases(fam: Family, *names: str) -> list[str]:
    return [arg for n in names for arg in ("--base", f"{OWNER}/{n}={fam[n]}")]


def _json(invoke: Invoke, *args: object, code: int) -> dict[str, Any]:
    result = invoke("lineage", "verify", *args, "--json", "--offline")
    assert result.exit_code == code, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize(
    ("name", "bases"),
    [("finetune", ["base"]), ("quantized", ["base"]), ("lora", ["base"]), ("merge", ["base", "finetune_b"])],
)
def test_consistent_exits_0(invoke: Invoke, fam: Family, name: str, bases: list[str]) -> None:
    data = _json(invoke, fam[name], *_bases(fam, *bases), code=0)
    assert data["verdict"] == "consistent"
    assert [p["base"] for p in data["parents"]] == [f"{OWNER}/{b}" for b in bases]
    assert data["thresholds"] == {"related_cosine": 0.2, "min_related": 0.5, "quantized_rel_l2": 0.05}


@pytest.mark.parametrize("name", ["random", "impostor"])
def test_not_derived_exits_1(invoke: Invoke, fam: Family, name: str) -> None:
    data = _json(invoke, fam[name], *_bases(fam, "base"), code=1)
    (parent,) = data["parents"]
    assert data["verdict"] == parent["verdict"] == "not_derived"
    assert parent["summary"]["related_fraction"] == 0
    assert {t["status"] for t in parent["tensors"]} <= {"identical", "changed"}


def test_unverifiable_exits_distinctly(invoke: Invoke, fam: Family) -> None:
    assert EXIT_UNVERIFIABLE not in (0, 1, 2)
    data = _json(invoke, fam["finetune"], code=EXIT_UNVERIFIABLE)
    assert data["verdict"] == "unverifiable" and data["parents"][0]["reason"] == "not fetched (--offline)"
    help_text = invoke("lineage", "verify", "--help").stdout
    assert f"{EXIT_UNVERIFIABLE} unverifiable" in " ".join(help_text.split())


def test_local_path_in_the_card_and_plain_base_option(invoke: Invoke, fam: Family, tmp_path: Path) -> None:
    model = tmp_path / "tuned"
    shutil.copytree(fam["finetune"], model)
    (model / "README.md").write_text(card(str(fam["base"]), relation="finetune"))
    assert _json(invoke, model, code=0)["parents"][0]["base"] == str(fam["base"])
    data = _json(invoke, fam["impostor"], "--base", fam["base"], code=1)
    assert data["parents"][0]["base"] == f"{OWNER}/base"


def test_table_output(invoke: Invoke, fam: Family) -> None:
    result = invoke("lineage", "verify", fam["random"], *_bases(fam, "base"))
    assert result.exit_code == 1
    assert "not_derived" in result.stdout and ".attn.c_proj.weight" in result.stdout
    assert "cosine" in result.stdout and "50%" in result.stdout
    adapter = invoke("lineage", "verify", fam["lora"], *_bases(fam, "base"), "--all")
    assert adapter.exit_code == 0 and "transformer.h.2.mlp.c_fc" in adapter.stdout


def test_diff_base_by_layer(invoke: Invoke, fam: Family) -> None:
    result = invoke("diff", fam["finetune"], "--base", fam["base"], "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    layers = {x["layer"]: x for x in data["layers"]}
    assert set(layers) >= {"transformer.h.0", "transformer.wte"}
    assert all(x["changed"] == x["tensors"] and x["rel_l2"] > 0.05 for x in layers.values())
    text = invoke("diff", fam["quantized"], "--base", fam["base"])
    assert text.exit_code == 1 and "transformer.h.1" in text.stdout and "layers changed" in text.stdout
    same = invoke("diff", fam["base"], "--base", fam["base"])
    assert same.exit_code == 0 and "0 of 6 layers changed" in same.stdout
    both = invoke("diff", fam["base"], fam["finetune"], "--base", fam["base"])
    assert both.exit_code == 2


def test_card_records_the_verdict_and_replaces_it(invoke: Invoke, fam: Family, tmp_path: Path) -> None:
    model = tmp_path / "claimed"
    shutil.copytree(fam["random"], model)
    (model / "README.md").write_text(card(f"{OWNER}/base", relation="finetune") + "Text of the authors.\n")
    result = invoke("lineage", "verify", model, *_bases(fam, "base"), "--offline", "--card")
    assert result.exit_code == 1 and "recorded the verdict in" in result.stderr, result.output
    text = (model / "README.md").read_text()
    assert text.startswith(card(f"{OWNER}/base", relation="finetune"))  # the metadata and the text are kept
    assert "Text of the authors." in text and "## Bias, Risks, and Limitations" in text
    block = text[text.index("<!-- openckpt-provenance -->") : text.index("<!-- /openckpt-provenance -->")]
    assert "**not derived**" in block and f"| `{OWNER}/base` | not derived |" in block and "| 0% |" in block
    again = invoke("lineage", "verify", model, "--base", fam["random"], "--offline", "--card", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["card"]["path"] == str(model / "README.md")
    text = (model / "README.md").read_text()
    assert text.count("<!-- openckpt-provenance -->") == 1 and "**consistent**" in text and "not derived" not in text


def test_card_and_push_are_for_their_kind_of_target(invoke: Invoke, fam: Family) -> None:
    pushed = invoke("lineage", "verify", fam["finetune"], "--offline", "--push")
    assert pushed.exit_code == 2 and "--card" in pushed.output
    carded = invoke("lineage", "verify", f"{OWNER}/finetune", "--offline", "--card")
    assert carded.exit_code == 2 and "--push" in carded.output
