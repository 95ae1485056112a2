"""The provenance verdict on a repo page, in a real headless Chromium: a model whose weights are not its declared
base's is marked in the model tree, with the figures behind the verdict; a real fine-tune reads consistent. Recorded
with ``openckpt lineage verify --push``, the verdict is also in the card, which the page renders, while
``model_info(expand=["lineageVerification"])`` carries the hub's own."""

from __future__ import annotations

import json

import httpx
import pytest
from huggingface_hub import HfApi, constants
from typer.testing import CliRunner

from openckpt.cli.app import app
from tests.governance.lineage_models import OWNER, family
from tests.hub.test_ui_browser import browser, downloads, pytestmark  # noqa: F401 - fixtures and the skip mark
from tests.hubtools import HubProcess


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)  # the browser sees HTML only: one backend is enough
def test_model_tree_shows_the_verdict(
    hub: HubProcess,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    driver = request.getfixturevalue("browser")
    assert isinstance(driver, WebDriver)
    fam = family(tmp_path_factory)
    token = hub.create_user(OWNER)
    api = HfApi(endpoint=hub.url, token=token)
    for name in ("base", "finetune", "random"):
        api.create_repo(f"{OWNER}/{name}")
        api.upload_folder(folder_path=fam[name], repo_id=f"{OWNER}/{name}")
    for name in ("finetune", "random"):  # computed now if the background check has not finished
        assert httpx.get(f"{hub.url}/api/models/{OWNER}/{name}/provenance", timeout=300).status_code == 200

    driver.get(f"{hub.url}/{OWNER}/random")
    verdict = driver.find_element(By.CSS_SELECTOR, "section.model-tree .provenance")
    assert "not derived" in verdict.text and "do not come from the model this card names" in verdict.text
    parents = driver.find_element(By.CSS_SELECTOR, "section.model-tree .provenance-parents").text
    assert f"{OWNER}/base: not derived" in parents and "cosine" in parents
    driver.get(f"{hub.url}/{OWNER}/finetune")
    assert "consistent" in driver.find_element(By.CSS_SELECTOR, "section.model-tree .provenance").text
    assert "not derived" not in driver.find_element(By.CSS_SELECTOR, "section.model-tree").text

    # the owner records the check in the card: the page renders it beside the hub's verdict, model_info carries both
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    args = ["lineage", "verify", f"{OWNER}/random", "--push", "--json", "--endpoint", hub.url, "--token", token]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    recorded = json.loads(result.stdout)["card"]
    head = api.list_repo_commits(f"{OWNER}/random")[0]
    assert head.commit_id == recorded["commit"] and head.title == "Record the provenance verdict: not derived"
    assert httpx.get(f"{hub.url}/api/models/{OWNER}/random/provenance", timeout=300).status_code == 200
    driver.get(f"{hub.url}/{OWNER}/random")
    card = driver.find_element(By.CSS_SELECTOR, "article.card .markdown").text
    assert "Provenance by the weights" in card and "not derived" in card and f"{OWNER}/base" in card
    assert "not derived" in driver.find_element(By.CSS_SELECTOR, "section.model-tree .provenance").text
    info = api.model_info(f"{OWNER}/random", expand=["lineageVerification", "cardData"])  # type: ignore[list-item]
    assert info.lineageVerification["verdict"] == "not_derived"  # type: ignore[attr-defined]
    assert info.card_data is not None and info.card_data["base_model"] == f"{OWNER}/base"  # the claim stays
