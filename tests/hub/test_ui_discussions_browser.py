"""A pull request's life in a real headless Chromium: a second user opens it with the stock client
(``create_commit(create_pr=True)`` changing the README and a safetensors file), finds it on the repo's community tab
and comments in the browser; the owner reads its files changed (the text diff and the tensor diff), merges it from
the page, and ``main`` has the change. Then the community pages at 390 px wide, with no horizontal scrolling, each
saved as a screenshot (their paths are printed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from safetensors.numpy import save

from tests.hub.test_ui_browser import pytestmark  # noqa: F401  (skipped without Chromium)
from tests.hub.test_ui_owner_browser import MOBILE, browser, downloads  # noqa: F401  (fixtures)
from tests.hubtools import HubProcess


def weights(scale: float) -> bytes:
    return save({"embed": np.arange(32, dtype=np.float32).reshape(4, 8) * scale, "bias": np.zeros(8, np.float32)})


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)  # the browser sees HTML only: one backend is enough
def test_open_comment_review_and_merge_a_pull_request(hub: HubProcess, browser: object, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    d, wait = browser, WebDriverWait(browser, 30)
    erin, bob = hub.create_user("erin"), hub.create_user("bob")
    owner = HfApi(endpoint=hub.url, token=erin)
    owner.create_repo("erin/tiny")
    owner.create_commit("erin/tiny", [CommitOperationAdd("README.md", b"# Tiny\n\nA tiny model.\n"),
                                      CommitOperationAdd("model.safetensors", weights(1.0))],
                        commit_message="Add the weights")  # fmt: skip
    pr = HfApi(endpoint=hub.url, token=bob).create_commit(
        "erin/tiny",
        [CommitOperationAdd("README.md", b"# Tiny\n\nA tiny model, trained twice.\n"),
         CommitOperationAdd("model.safetensors", weights(3.0))],
        commit_message="Train it twice",
        commit_description="Same data, **two** epochs.",
        create_pr=True,
    )  # fmt: skip
    assert pr.pr_num == 1

    def text(selector: str) -> str:
        return str(d.find_element(By.CSS_SELECTOR, selector).text)

    def log_in(token: str) -> None:
        d.delete_all_cookies()
        d.get(f"{hub.url}/login")
        d.find_element(By.NAME, "token").send_keys(token)
        d.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()
        wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, "a.me"))

    # the contributor finds the pull request on the community tab and comments
    log_in(bob)
    d.get(f"{hub.url}/erin/tiny")
    d.find_element(By.LINK_TEXT, "Community").click()
    wait.until(lambda x: x.current_url.endswith("/erin/tiny/discussions"))
    d.find_element(By.LINK_TEXT, "Train it twice").click()
    wait.until(lambda x: x.current_url.endswith("/erin/tiny/discussions/1"))
    assert "two" in text(".timeline .comment .markdown strong")
    assert not d.find_elements(By.CSS_SELECTOR, "form.merge-form")  # not a writer
    d.find_element(By.NAME, "comment").send_keys("Loss went from *2.1* to *1.7*.")
    d.find_element(By.CSS_SELECTOR, "form.comment-form button[value=comment]").click()
    wait.until(lambda x: "#" in x.current_url)
    assert text(".timeline li.comment:last-of-type .markdown em") == "2.1"

    # the owner reviews the files changed: the text diff and the tensor diff
    log_in(erin)
    d.get(f"{hub.url}/erin/tiny/discussions/1")
    assert "Loss went from" in text(".timeline")
    d.find_element(By.LINK_TEXT, "Files changed").click()
    wait.until(lambda x: x.current_url.endswith("/discussions/1/files"))
    assert text("pre.udiff .del") == "-A tiny model."
    assert text("pre.udiff .add") == "+A tiny model, trained twice."
    row = text("table.tensor-diff tr.t-changed")
    assert "embed" in row and "F32 [4, 8]" in row and "62" in row  # max-abs: 31 * 3 - 31
    assert "1 unchanged" in text("main")

    # and merges it from the page: main has the change
    d.find_element(By.LINK_TEXT, "Conversation").click()
    d.find_element(By.CSS_SELECTOR, "form.merge-form button[type=submit]").click()
    wait.until(lambda x: x.find_elements(By.CSS_SELECTOR, ".status-event .status-merged"))
    assert "merged as" in text(".thread-head")
    readme = hf_hub_download("erin/tiny", "README.md", endpoint=hub.url, token=erin, cache_dir=tmp_path / "c")
    assert Path(readme).read_bytes() == b"# Tiny\n\nA tiny model, trained twice.\n"
    model = hf_hub_download("erin/tiny", "model.safetensors", endpoint=hub.url, token=erin, cache_dir=tmp_path / "c")
    assert Path(model).read_bytes() == weights(3.0)
    assert next(c.title for c in owner.list_repo_commits("erin/tiny")) == "Train it twice"  # a fast-forward

    # a discussion from the form, for the list at 390 px
    d.get(f"{hub.url}/erin/tiny/discussions")
    d.find_element(By.NAME, "title").send_keys("A question with a rather long title about the training data used")
    d.find_element(By.NAME, "description").send_keys("Which corpus? `wikitext-103-raw-v1`")
    d.find_element(By.CSS_SELECTOR, ".new-discussion button[type=submit]").click()
    wait.until(lambda x: x.current_url.endswith("/discussions/2"))

    # the community pages at 390 px: nothing scrolls sideways
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", MOBILE)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    paths = ["/erin/tiny/discussions", "/erin/tiny/discussions?status=closed", "/erin/tiny/discussions/1",
             "/erin/tiny/discussions/1/files", "/erin/tiny/discussions/2"]  # fmt: skip
    wide = []
    for who, token in (("erin", erin), ("bob", bob), ("anon", None)):
        if token is None:
            d.delete_all_cookies()
        else:
            log_in(token)
        for path in paths:
            d.get(hub.url + path)
            width = d.execute_script("return document.scrollingElement.scrollWidth")
            shot = shots / (re.sub(r"[^A-Za-z0-9]+", "-", f"{who}{path}").strip("-") + ".png")
            d.save_screenshot(str(shot))
            print(f"390px {width:>4}px wide  {shot}")
            if width > MOBILE["width"]:
                wide.append(f"{path} as {who}: {width}px")
    assert not wide, f"pages wider than 390 px: {wide}"
