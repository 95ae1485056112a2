"""The web UI in a real headless Chromium (driven by Selenium through Debian's chromedriver): log in with a token,
search, open a model, download a file, and save a screenshot of the repo page."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.hub.test_ui import publish_model
from tests.hubtools import HubProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "repo-page.png"

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason="needs Debian's chromium and chromium-driver packages (scripts/test installs them)",
)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def browser(tmp_path: Path, downloads: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", "--no-first-run", "--hide-scrollbars", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    # An explicit driver path: Selenium Manager (which would download a driver) is never started.
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _downloaded(folder: Path, name: str, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = folder / name
        if path.exists() and not list(folder.glob("*.crdownload")):
            return path.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; the folder holds {sorted(p.name for p in folder.iterdir())}")


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)  # the browser sees HTML only: one backend is enough
def test_login_search_open_download(hub: HubProcess, browser: object, downloads: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    token = hub.create_user("dana")
    api = HfApi(endpoint=hub.url, token=token)
    (tmp_path / "public").mkdir()
    (tmp_path / "private").mkdir()
    files = publish_model(api, "dana/tiny-gpt", tmp_path / "public")
    publish_model(api, "dana/tiny-gpt-private", tmp_path / "private", private=True)
    wait = WebDriverWait(browser, 30)

    # log in with the token
    browser.get(f"{hub.url}/")
    browser.find_element(By.LINK_TEXT, "Log in").click()
    wait.until(lambda d: "/login" in d.current_url)
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.me"))
    assert browser.find_element(By.CSS_SELECTOR, "a.me").text == "dana"
    assert not [c for c in browser.get_cookies() if c["name"] == "openckpt_session" and not c["httpOnly"]]

    # search from the home page: the private model shows too, because this browser is signed in
    box = browser.find_element(By.CSS_SELECTOR, ".big-search input[name=q]")
    box.send_keys("tiny-gpt", Keys.ENTER)
    wait.until(lambda d: "/search?q=tiny-gpt" in d.current_url)
    results = browser.find_element(By.CSS_SELECTOR, "main").text
    assert "tiny-gpt-private" in results

    # open the model
    browser.find_element(By.CSS_SELECTOR, "a.repo-name[href='/dana/tiny-gpt']").click()
    wait.until(lambda d: d.current_url.endswith("/dana/tiny-gpt"))
    assert browser.find_element(By.CSS_SELECTOR, ".markdown h1").text == "Tiny GPT"
    panel = browser.find_element(By.CSS_SELECTOR, "section.openckpt").text
    assert "124M" in panel and "finetune" in panel and "eval_loss" in panel

    # a screenshot of the repo page
    browser.set_window_size(1280, 1240)
    shot = tmp_path / "repo-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not SCREENSHOT.exists() or os.environ.get("OPENCKPT_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    # download a file by clicking its link
    link = browser.find_element(By.CSS_SELECTOR, "a.download[href$='/model.safetensors']")
    assert link.get_attribute("href") == f"{hub.url}/dana/tiny-gpt/resolve/main/model.safetensors"
    link.click()
    assert _downloaded(downloads, "model.safetensors") == files["model.safetensors"]
