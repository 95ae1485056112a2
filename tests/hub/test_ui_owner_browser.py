"""The owner's web UI in a real headless Chromium, as a new user would use it: accept an invite, log in, create a
repo, upload a file from the form, edit the README, gate the repo and add a field to its access form, a second user
requests access filling it in, the owner reads the answer and approves, the second user downloads and reads the
commit pages (text and tensor diffs); the owner makes another branch the default one and back, and manages an
organisation's members from its profile; then every page at 390 px wide, with no horizontal scrolling, each saved
as a whole-page screenshot (their paths are printed)."""

from __future__ import annotations

import base64
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
    form = "form.gate-fields-form"
    d.find_element(By.CSS_SELECTOR, f"{form} input[name=heading]").send_keys("Who is asking?")
    d.find_element(By.CSS_SELECTOR, f"{form} input[name='field-0-name']").send_keys("Company")
    submit(form)
    wait.until(lambda x: "saved=gate-form" in x.current_url)
    assert d.find_element(By.CSS_SELECTOR, f"{form} input[name='field-0-name']").get_attribute("value") == "Company"

    # a second user asks for access: no download button until approved
    bob = hub.create_user("bob")
    log_in(bob)
    d.get(repo)
    assert not d.find_elements(By.CSS_SELECTOR, "a.download")
    assert "Who is asking?" in css("section.gate").text  # type: ignore[attr-defined]
    d.find_element(By.CSS_SELECTOR, "form.gate-form input[name=field0]").send_keys("ACME")
    submit("form.gate-form")
    wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, ".gate-status"))

    # the owner approves
    log_in(erin)
    d.get(f"{repo}/settings")
    assert "Company: ACME" in css("table.requests-pending").text  # type: ignore[attr-defined]
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

    # the owner makes another branch the default one: the repo page follows it; then back to main
    from huggingface_hub import HfApi

    HfApi(endpoint=hub.url, token=erin).create_branch("erin/tiny", branch="dev", revision=text_commit.rsplit("/", 1)[1])
    log_in(erin)
    d.get(f"{repo}/settings")
    Select(d.find_element(By.CSS_SELECTOR, "form.default-branch-form select[name=branch]")).select_by_value("dev")
    submit("form.default-branch-form")
    wait.until(lambda x: "saved=default-branch" in x.current_url)
    d.get(repo)
    assert css(".rev-switch summary strong").text == "dev"  # type: ignore[attr-defined]
    d.get(f"{repo}/settings")
    Select(d.find_element(By.CSS_SELECTOR, "form.default-branch-form select[name=branch]")).select_by_value("main")
    submit("form.default-branch-form")
    wait.until(lambda x: "saved=default-branch" in x.current_url)

    # an organisation's admin manages its members from the organisation's profile
    hub.create_org("lab", {"erin": "admin"})
    d.get(f"{hub.url}/lab")
    d.find_element(By.LINK_TEXT, "Manage members and roles").click()
    add = "form:has(input[value=set]):has(input[type=text][name=user])"
    d.find_element(By.CSS_SELECTOR, f"{add} input[name=user]").send_keys("bob")
    Select(d.find_element(By.CSS_SELECTOR, f"{add} select[name=role]")).select_by_visible_text("write")
    submit(add)
    wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, "select[aria-label='Role of bob']"))
    role = Select(d.find_element(By.CSS_SELECTOR, "select[aria-label='Role of bob']"))
    assert role.first_selected_option.text == "write"

    # every page at 390 px: nothing scrolls sideways
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
            height = d.execute_script("return document.scrollingElement.scrollHeight")
            clip = {"x": 0, "y": 0, "width": MOBILE["width"], "height": height, "scale": 1}  # the whole page
            taken = d.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
            shot.write_bytes(base64.b64decode(taken["data"]))
            print(f"390px {width:>4}px wide  {shot}")
            if width > MOBILE["width"]:
                wide.append(f"{path} as {who or 'anonymous'}: {width}px")
    assert not wide, f"pages wider than 390 px: {wide}"
