"""The provenance verdict on a repo page, in a real headless Chromium: a model whose weights are not its declared
base's is marked in the model tree, with the figures behind the verdict; a real fine-tune reads consistent."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi

from tests.governance.lineage_models import OWNER, family
from tests.hub.test_ui_browser import browser, downloads, pytestmark  # noqa: F401 - fixtures and the skip mark
from tests.hubtools import HubProcess


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)  # the browser sees HTML only: one backend is enough
def test_model_tree_shows_the_verdict(
    hub: HubProcess, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    driver = request.getfixturevalue("browser")
    assert isinstance(driver, WebDriver)
    fam = family(tmp_path_factory)
    api = HfApi(endpoint=hub.url, token=hub.create_user(OWNER))
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
