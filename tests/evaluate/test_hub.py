"""``openckpt evaluate bias REPO --push`` against a real hub: a new commit with the card, and the repo page's bias
section (SQLite and PostgreSQL hubs)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from huggingface_hub import HfApi, constants

from openckpt.client.push import push
from openckpt.governance.cards import parse_card, validate_card
from tests.hubtools import HubProcess

from .test_fairness import write_csv

Invoke = Callable[..., Result]


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads of this test go to its own huggingface_hub cache."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_push_commits_the_card_and_the_page_shows_it(
    hub: HubProcess, invoke: Invoke, classifier: Path, tmp_path: Path, unique: str, hf_cache: Path
) -> None:
    user = f"e{unique}"
    token = hub.create_user(user)
    repo = f"{user}/yes-classifier"
    push(shutil.copytree(classifier, tmp_path / "model"), repo, endpoint=hub.url, token=token)
    api = HfApi(endpoint=hub.url, token=token)
    before = api.list_repo_commits(repo)

    common = ["--endpoint", hub.url, "--token", token]
    refused = invoke("evaluate", "bias", repo, "--suite", "weat", "--push", *common)
    assert refused.exit_code == 2 and "UnsuitableModelError" in refused.stderr, refused.output

    data = write_csv(tmp_path / "reviews.csv")
    result = invoke("evaluate", "bias", repo, "--suite", "fairness", "--data", data, "--sensitive-col", "group",
                    "--push", "--json", *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["commit"] == before[0].commit_id
    after = api.list_repo_commits(repo)
    assert len(after) == len(before) + 1  # the refused suite committed nothing
    assert after[0].commit_id == out["card"]["commit"] and after[0].title == "Add fairness bias evaluation"

    readme = Path(api.hf_hub_download(repo, "README.md", revision=after[0].commit_id)).read_text()
    meta, errors, _ = validate_card(readme)
    assert errors == []
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"] if "config" in m}
    assert metrics["demographic_parity_difference"] == pytest.approx(0.1)
    assert "## Bias, Risks, and Limitations" in parse_card(readme)[1]

    page = httpx.get(f"{hub.url}/{repo}", timeout=30)
    assert page.status_code == 200
    html = page.text
    section = html[html.index('<section class="bias-section"') :]
    section = section[: section.index("</section>")]
    assert "Group fairness (fairlearn) · reviews.csv" in section
    assert "Demographic parity difference (group)</th><td>0.1</td>" in section
    assert "Equalized odds difference (group)</th><td>0.5</td>" in section
    assert "Accuracy (group=B)</th><td>0.8</td>" in section
    assert "Bias, Risks, and Limitations" in html  # the card itself, rendered


def test_without_push_nothing_is_committed(
    hub: HubProcess, invoke: Invoke, masked_lm: Path, tmp_path: Path, unique: str, hf_cache: Path
) -> None:
    user = f"e{unique}"
    token = hub.create_user(user)
    repo = f"{user}/tiny-mlm"
    push(shutil.copytree(masked_lm, tmp_path / "model"), repo, endpoint=hub.url, token=token)
    api = HfApi(endpoint=hub.url, token=token)
    before = api.list_repo_commits(repo)
    result = invoke("evaluate", "bias", repo, "--suite", "crows-pairs", "--limit", "3", "--endpoint", hub.url,
                    "--token", token)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "add --push to commit these results" in result.stderr
    assert "stereotype score" in result.stdout
    assert api.list_repo_commits(repo) == before
    assert "bias-section" not in httpx.get(f"{hub.url}/{repo}", timeout=30).text
