"""``openckpt lineage verify REPO`` against a live hub (SQLite and PostgreSQL): the bases a model declares are fetched
from the hub, compared by their weights, and a base that is absent or private to the caller is unverifiable. The hub
runs the same check after each commit naming a base it holds: ``/api/models/{id}/provenance``,
``model_info(expand=["lineageVerification"])`` and the repo page show it."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi
from typer.testing import CliRunner

from openckpt.cli.app import app
from openckpt.cli.lineage import EXIT_UNVERIFIABLE
from tests.governance.lineage_models import OWNER, Family, card, family
from tests.hub.conftest import People
from tests.hubtools import HubProcess

NAMES = ("base", "finetune", "finetune_b", "lora", "quantized", "merge", "random", "impostor")


@pytest.fixture(scope="module")
def hosted(
    hub: HubProcess, people: People, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[HubProcess, People]]:
    """Every model of the family in alice's namespace, plus a derivative of a private base and one of a missing
    base; downloads go to a cache of this module's own."""
    fam: Family = family(tmp_path_factory)
    alice = HfApi(endpoint=hub.url, token=people.alice)
    for name in NAMES:
        alice.create_repo(f"{OWNER}/{name}")
        alice.upload_folder(folder_path=fam[name], repo_id=f"{OWNER}/{name}", commit_message=f"add {name}")
    bob = HfApi(endpoint=hub.url, token=people.bob)
    bob.create_repo("bob/secret-base", private=True)
    bob.upload_folder(folder_path=fam["base"], repo_id="bob/secret-base")
    staging = tmp_path_factory.mktemp("claims")
    for name, base in (("claims-private", "bob/secret-base"), ("orphan", f"{OWNER}/gone")):
        shutil.copytree(fam["finetune"], staging / name)
        (staging / name / "README.md").write_text(card(base, relation="finetune"))
        alice.create_repo(f"{OWNER}/{name}")
        alice.upload_folder(folder_path=staging / name, repo_id=f"{OWNER}/{name}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
        yield hub, people


def _verify(hosted: tuple[HubProcess, People], target: str, *, code: int, token: str | None = None) -> dict[str, Any]:
    hub, people = hosted
    args = ["lineage", "verify", target, "--json", "--endpoint", hub.url, "--token", token or people.alice]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.mark.parametrize("name", ["finetune", "lora", "quantized", "merge"])
def test_hosted_derivatives_are_consistent(hosted: tuple[HubProcess, People], name: str) -> None:
    data = _verify(hosted, f"{OWNER}/{name}", code=0)
    assert data["verdict"] == "consistent" and data["model"] == f"{OWNER}/{name}"
    assert all(p["verdict"] == "consistent" for p in data["parents"])


def test_merge_parents_are_both_fetched(hosted: tuple[HubProcess, People]) -> None:
    data = _verify(hosted, f"{OWNER}/merge@main", code=0)
    assert [p["base"] for p in data["parents"]] == [f"{OWNER}/base", f"{OWNER}/finetune_b"]
    assert all(p["summary"]["mean_cosine"] > 0.5 for p in data["parents"])


@pytest.mark.parametrize("name", ["random", "impostor"])
def test_hosted_unrelated_weights_are_not_derived(hosted: tuple[HubProcess, People], name: str) -> None:
    data = _verify(hosted, f"{OWNER}/{name}", code=1)
    assert data["verdict"] == "not_derived"
    assert data["parents"][0]["summary"]["related_fraction"] == 0


def test_missing_or_private_base_is_unverifiable(hosted: tuple[HubProcess, People]) -> None:
    orphan = _verify(hosted, f"{OWNER}/orphan", code=EXIT_UNVERIFIABLE)
    assert orphan["verdict"] == "unverifiable" and "absent" in orphan["parents"][0]["reason"]
    hidden = _verify(hosted, f"{OWNER}/claims-private", code=EXIT_UNVERIFIABLE)
    assert "private" in hidden["parents"][0]["reason"]
    owner_view = _verify(hosted, f"{OWNER}/claims-private", code=0, token=hosted[1].bob)
    assert owner_view["verdict"] == "consistent"


def test_a_directory_checked_against_the_hub(hosted: tuple[HubProcess, People], tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    hub, people = hosted
    local = snapshot_download(f"{OWNER}/impostor", endpoint=hub.url, token=people.alice, local_dir=tmp_path / "m")
    data = _verify(hosted, str(local), code=1)
    assert data["parents"][0]["base"] == f"{OWNER}/base"


def _hub_verdict(hosted: tuple[HubProcess, People], repo: str) -> dict[str, Any]:
    hub, people = hosted
    headers = {"authorization": f"Bearer {people.alice}"}
    response = httpx.get(f"{hub.url}/api/models/{repo}/provenance", headers=headers, timeout=300)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_the_hub_checks_commits_that_name_a_base_it_holds(hosted: tuple[HubProcess, People]) -> None:
    hub, people = hosted
    api = HfApi(endpoint=hub.url, token=people.alice)
    deadline = time.monotonic() + 300  # the check runs in the hub's background thread after each commit
    info = api.model_info(f"{OWNER}/impostor", expand=["lineageVerification"])  # type: ignore[list-item]
    while getattr(info, "lineageVerification", None) is None and time.monotonic() < deadline:
        time.sleep(0.5)
        info = api.model_info(f"{OWNER}/impostor", expand=["lineageVerification"])  # type: ignore[list-item]
    found = info.lineageVerification  # type: ignore[attr-defined]
    assert found["verdict"] == "not_derived" and found["commit"] == info.sha
    assert "tensors" not in found["parents"][0] and found["parents"][0]["summary"]["related_fraction"] == 0
    page = httpx.get(f"{hub.url}/{OWNER}/impostor").text
    assert "provenance-not_derived" in page and "the weights do not come from the model this card names" in page


@pytest.mark.parametrize(
    ("name", "verdict", "reason"),
    [
        ("finetune", "consistent", "cosine"),
        ("lora", "consistent", "fitting shapes"),
        ("merge", "consistent", "cosine"),
        ("random", "not_derived", "needed"),
        ("orphan", "unverifiable", "not on this hub"),
        ("claims-private", "unverifiable", "the base is private"),
    ],
)
def test_hub_verdicts(hosted: tuple[HubProcess, People], name: str, verdict: str, reason: str) -> None:
    data = _hub_verdict(hosted, f"{OWNER}/{name}")
    assert data["verdict"] == verdict
    assert all(reason in p["reason"] for p in data["parents"] if p["verdict"] == verdict)
    if name == "finetune":
        assert len(data["parents"][0]["tensors"]) == 40
        base_head = HfApi(endpoint=hosted[0].url, token=hosted[1].alice).model_info(f"{OWNER}/base").sha
        assert data["base_commits"] == {f"{OWNER}/base": base_head}


def test_push_records_the_verdict_in_the_card(hosted: tuple[HubProcess, People]) -> None:
    hub, people = hosted
    api = HfApi(endpoint=hub.url, token=people.alice)
    before = api.list_repo_commits(f"{OWNER}/quantized")[0].commit_id
    args = ["lineage", "verify", f"{OWNER}/quantized", "--push", "--endpoint", hub.url, "--token", people.alice]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "committed the verdict to the card" in result.stderr, result.output
    head = api.list_repo_commits(f"{OWNER}/quantized")[0]
    assert head.title == "Record the provenance verdict: consistent" and head.commit_id != before
    readme = Path(api.hf_hub_download(f"{OWNER}/quantized", "README.md")).read_text()
    assert readme.startswith(card(f"{OWNER}/base", relation="quantized").split("# A tiny model")[0])
    assert "### Provenance by the weights" in readme and f"| `{OWNER}/base` | consistent |" in readme
    reader = CliRunner().invoke(app, [*args[:-2], "--token", people.olga])  # a reader of the repo cannot commit
    assert reader.exit_code == 4, reader.output
