"""The owner's web UI in a real headless Chromium, as a new user would use it: accept an invite, log in, create a
repo, upload a file from the form, edit the README, gate the repo, a second user requests access, the owner approves,
the second user downloads and reads the commit pages (text and tensor diffs); then every page at 390 px wide, with
no horizontal scrolling, each saved as a screenshot (their paths are printed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from tests.hub.test_ui_browser import CHROMEDRIVER, CHROMIUM, _downloaded, pytestmark  # noqa: F401
from tests.hubtools import HubProcess, start_hub

MOBILE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


@pytest.fixture
def invite_hub(tmp_path: Path) -> Iterator[HubProcess]:
    server = start_hub(tmp_path / "hub" / "data", env={"OPENCKPT_SIGNUP": "invite"})
    yield server
    server.stop()


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
                "--disable-extensions", "--no-first-run", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def weights(scale: float) -> bytes:
    return save({"embed": np.arange(32, dtype=np.float32).reshape(4, 8) * scale, "bias": np.zeros(8, np.float32)})


def test_new_user_runs_a_gated_repo_from_the_browser(
    invite_hub: HubProcess, browser: object, downloads: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select, WebDriverWait

    assert isinstance(browser, WebDriver)
    hub, d = invite_hub, browser
    wait = WebDriverWait(d, 30)

    def css(selector: str) -> object:
        return d.find_element(By.CSS_SELECTOR, selector)

    def submit(form: str) -> None:
        d.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()

    def log_in(token: str) -> None:
        d.delete_all_cookies()
        d.get(f"{hub.url}/login")
        d.find_element(By.NAME, "token").send_keys(token)
        submit("form[action='/login']")
        wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, "a.me"))

    # the admin makes an invite link
    log_in(hub.token)
    d.get(f"{hub.url}/admin/users")
    invite_form = "form[action='/admin/users']:has(input[value=invite])"
    d.find_element(By.CSS_SELECTOR, f"{invite_form} input[name=name]").send_keys("erin")
    submit(invite_form)
    link = d.find_element(By.ID, "invite-link").get_attribute("value")
    assert link is not None and "/join?invite=erin." in link

    # the new user accepts it: the account is made and this browser signed in, the token shown once
    d.delete_all_cookies()
    d.get(link)
    d.find_element(By.NAME, "fullname").send_keys("Erin Example")
    submit("form[action='/join']")
    erin = d.find_element(By.ID, "new-token").get_attribute("value")
    assert erin is not None and erin.startswith("oc_")
    log_in(erin)  # and logs in with it, as on another machine
    assert d.find_element(By.CSS_SELECTOR, "a.me").text == "erin"

    # create a repo
    d.find_element(By.LINK_TEXT, "+ New").click()
    d.find_element(By.NAME, "name").send_keys("tiny")
    submit("form[action='/new']")
    wait.until(lambda x: x.current_url.endswith("/erin/tiny"))
    repo = f"{hub.url}/erin/tiny"

    # upload a file from the form
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "model.safetensors").write_bytes(weights(1.0))
    d.find_element(By.LINK_TEXT, "Files").click()
    d.find_element(By.LINK_TEXT, "Upload files").click()
    d.find_element(By.NAME, "files").send_keys(str(tmp_path / "v1" / "model.safetensors"))
    d.find_element(By.NAME, "title").send_keys("Add the weights")
    submit("form[enctype='multipart/form-data']")
    wait.until(lambda x: "/commit/" in x.current_url)
    assert "Add the weights" in css("main").text  # type: ignore[attr-defined]

    # write the README, then edit it from its page
    d.get(f"{repo}/edit/main/README.md")
    d.find_element(By.NAME, "content").send_keys("# Tiny\n\nA tiny model.\n")
    submit("form[action$='/edit/main/README.md']")
    wait.until(lambda x: "/commit/" in x.current_url)
    d.get(f"{repo}/blob/main/README.md")
    d.find_element(By.LINK_TEXT, "Edit").click()
    box = d.find_element(By.NAME, "content")
    box.clear()
    box.send_keys("# Tiny\n\nA tiny model, trained twice.\n")
    d.find_element(By.NAME, "title").send_keys("Say how it was trained")
    submit("form[action$='/edit/main/README.md']")
    wait.until(lambda x: "/commit/" in x.current_url)
    text_commit = d.current_url

    # new weights: a tensor diff
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "model.safetensors").write_bytes(weights(3.0))
    d.get(f"{repo}/upload/main")
    d.find_element(By.NAME, "files").send_keys(str(tmp_path / "v2" / "model.safetensors"))
    submit("form[enctype='multipart/form-data']")
    wait.until(lambda x: "/commit/" in x.current_url)
    tensor_commit = d.current_url

    # gate it: the authors review each request
    d.find_element(By.CSS_SELECTOR, ".tabs a[href='/erin/tiny/settings']").click()
    Select(d.find_element(By.NAME, "gated")).select_by_value("manual")
    submit("form:has(input[value=gating])")
    wait.until(lambda x: "saved=gating" in x.current_url)

    # a second user asks for access: no download button until approved
    bob = hub.create_user("bob")
    log_in(bob)
    d.get(repo)
    assert not d.find_elements(By.CSS_SELECTOR, "a.download")
    submit("form.gate-form")
    wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, ".gate-status"))

    # the owner approves
    log_in(erin)
    d.get(f"{repo}/settings")
    d.find_element(By.CSS_SELECTOR, "table.requests-pending form:has(input[value=accepted]) button").click()
    wait.until(lambda x: "saved=accepted" in x.current_url)
    assert "bob" in css("table.requests-accepted").text  # type: ignore[attr-defined]

    # the second user downloads, and reads the commit pages
    log_in(bob)
    d.get(repo)
    d.find_element(By.CSS_SELECTOR, "a.download[href$='/model.safetensors']").click()
    assert _downloaded(downloads, "model.safetensors") == weights(3.0)
    d.get(text_commit)
    assert d.find_element(By.CSS_SELECTOR, "pre.udiff .del").text == "-A tiny model."
    assert d.find_element(By.CSS_SELECTOR, "pre.udiff .add").text == "+A tiny model, trained twice."
    d.get(tensor_commit)
    row = d.find_element(By.CSS_SELECTOR, "table.tensor-diff tr.t-changed").text
    assert "embed" in row and "F32 [4, 8]" in row and "62" in row  # max-abs: 31 * 3 - 31
    assert "1 unchanged" in css("main").text  # type: ignore[attr-defined]

    # every page at 390 px: nothing scrolls sideways
    hub.create_org("lab", {"erin": "admin", "bob": "write"})
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", MOBILE)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    sha = tensor_commit.rsplit("/", 1)[1]
    pages = {
        "bob": ["/", "/models", "/datasets", "/search?q=tiny", "/erin/tiny", "/erin/tiny/tree/main",
                "/erin/tiny/blob/main/README.md", "/erin/tiny/blob/main/model.safetensors",
                "/erin/tiny/tensors/main/model.safetensors", "/erin/tiny/commits/main", text_commit, tensor_commit,
                "/erin/tiny/refs", "/erin", "/settings", "/settings/tokens", "/settings/keys", "/new",
                "/erin/tiny/discussions"],
        "erin": ["/erin/tiny", "/erin/tiny/settings", "/erin/tiny/upload/main", "/erin/tiny/edit/main/README.md",
                 f"/erin/tiny/commit/{sha}", "/organizations/lab/members", "/lab"],
        "admin": ["/admin/users", "/admin/storage"],
        "": ["/", "/login", "/join", "/erin/tiny"],
    }  # fmt: skip
    wide = []
    for who, paths in pages.items():
        if who:
            log_in({"bob": bob, "erin": erin, "admin": hub.token}[who])
        else:
            d.delete_all_cookies()
        for path in paths:
            d.get(path if path.startswith("http") else hub.url + path)
            width = d.execute_script("return document.scrollingElement.scrollWidth")
            name = re.sub(r"[^A-Za-z0-9]+", "-", f"{who or 'anon'}{path.replace(hub.url, '')}").strip("-")
            shot = shots / f"{name}.png"
            d.save_screenshot(str(shot))
            print(f"390px {width:>4}px wide  {shot}")
            if width > MOBILE["width"]:
                wide.append(f"{path} as {who or 'anonymous'}: {width}px")
    assert not wide, f"pages wider than 390 px: {wide}"
