"""The owner's web pages over HTTP against a real hub process (SQLite and PostgreSQL): commit diffs (text and
tensors), the tensor list of a safetensors file, and the owner's forms with their CSRF protection."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.numpy import save

from tests.hubtools import HubProcess, Postgres, start_hub


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def owner_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub whose sign-up is by invitation."""
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(tmp_path_factory.mktemp("hub") / "data", url, env={"OPENCKPT_SIGNUP": "invite"})
    yield server
    server.stop()


def weights(scale: float, *, extra: bool = False) -> bytes:
    tensors = {"w": np.arange(12, dtype=np.float32).reshape(3, 4) * scale, "b": np.zeros(4, dtype=np.float32)}
    if extra:
        tensors["head"] = np.ones((2, 2), dtype=np.float16)
    return save(tensors)


def make_model(api: HfApi, repo_id: str) -> tuple[str, str]:
    """A model with a README and weights, then a commit changing both; returns the two commit ids."""
    api.create_repo(repo_id)
    first = api.create_commit(repo_id, [CommitOperationAdd("README.md", b"# Tiny\n\nline one\nline two\n"),
                                        CommitOperationAdd("model.safetensors", weights(1.0))],
                              commit_message="first")  # fmt: skip
    second = api.create_commit(repo_id, [CommitOperationAdd("README.md", b"# Tiny\n\nline one\nline 2 <b>\n"),
                                         CommitOperationAdd("model.safetensors", weights(2.0, extra=True))],
                               commit_message="second")  # fmt: skip
    return first.oid, second.oid


def test_commit_page_shows_text_and_tensor_diffs(owner_hub: HubProcess) -> None:
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/diff-{uuid.uuid4().hex[:6]}"
    _, second = make_model(api, repo_id)
    html = httpx.get(f"{owner_hub.url}/{repo_id}/commit/{second}").text
    assert '<span class="l del">-line two</span>' in html
    assert '<span class="l add">+line 2 &lt;b&gt;</span>' in html  # escaped, never markup
    row = re.search(r'<tr class="t-changed">(.*?)</tr>', html, re.S)
    assert row is not None and ">w<" in row.group(1) and "F32 [3, 4]" in row.group(1) and ">11<" in row.group(1)
    assert '<tr class="t-added">' in html and "F16 [2, 2]" in html
    assert "1 unchanged" in html  # b: same bytes


def test_tensor_list_of_a_safetensors_file(owner_hub: HubProcess) -> None:
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/tensors-{uuid.uuid4().hex[:6]}"
    make_model(api, repo_id)
    blob = httpx.get(f"{owner_hub.url}/{repo_id}/blob/main/model.safetensors").text
    assert f"/{repo_id}/tensors/main/model.safetensors" in blob
    html = httpx.get(f"{owner_hub.url}/{repo_id}/tensors/main/model.safetensors").text
    assert "<strong>20</strong> parameters" in html and "F32 16" in html and "F16 4" in html
    assert '<td class="mono">head</td>' in html


def test_missing_pages_are_html(owner_hub: HubProcess, tmp_path: Path) -> None:
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/pages-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id)
    for path in (f"/{repo_id}/discussions", f"/{repo_id}/compare/main...main"):
        response = httpx.get(owner_hub.url + path)
        assert response.status_code == 404 and response.headers["content-type"].startswith("text/html"), path
