"""A hostile model card in a real headless Chromium: no script of the card runs (script tags, event handlers,
``javascript:`` links, raw HTML), and the gated-access form and openness panel render."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi

from tests.hub.test_ui_browser import browser, downloads, pytestmark  # noqa: F401 - fixtures and the skip mark
from tests.hubtools import HubProcess

HOSTILE = """---
license: apache-2.0
---
# Harmless title

<img src=x onerror="document.title='pwned'">
<script>document.title='pwned'</script>
<svg onload="document.title='pwned'"><circle r="1"/></svg>
<iframe src="javascript:document.title='pwned'"></iframe>
<a id="js" href="javascript:document.title='pwned'">click me</a>
<a href="JaVaScRiPt:alert(1)">second</a>
<div onclick="alert(1)" style="background:url(javascript:alert(1))">raw html</div>
<form action="javascript:alert(1)"><button id="btn">go</button></form>

[markdown link](javascript:alert(1))
"""


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)  # the browser sees HTML only: one backend is enough
def test_no_script_of_a_card_runs(hub: HubProcess, request: pytest.FixtureRequest) -> None:
    from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver

    driver = request.getfixturevalue("browser")  # the fixture of test_ui_browser, imported above
    assert isinstance(driver, WebDriver)
    token = hub.create_user("mallory")
    api = HfApi(endpoint=hub.url, token=token)
    api.create_repo("mallory/xss")
    api.upload_file(path_or_fileobj=HOSTILE.encode(), path_in_repo="README.md", repo_id="mallory/xss")

    driver.get(f"{hub.url}/mallory/xss")
    title = driver.title
    assert "pwned" not in title and "mallory/xss" in title
    card = driver.find_element(By.CSS_SELECTOR, ".markdown")
    assert card.find_element(By.TAG_NAME, "h1").text == "Harmless title"
    html = card.get_attribute("innerHTML") or ""
    for needle in ("<script", "onerror=", "onload=", "onclick=", '="javascript:', "<iframe", "<form", "style="):
        assert needle not in html.lower(), needle
    for link in card.find_elements(By.TAG_NAME, "a"):
        link.click()
        driver.switch_to.window(driver.window_handles[0])
    with pytest.raises(NoSuchElementException):
        card.find_element(By.ID, "btn")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is what raises
    assert "pwned" not in driver.title
    assert driver.execute_script("return document.title") == title  # the test's own script still runs
    panel = driver.find_element(By.CSS_SELECTOR, "section.openness").text
    assert "OSI Open Source AI Definition" in panel
