"""``/api/validate-yaml`` reports the card's real errors and warnings, and the stock client refuses to push a card
with errors; the repo page shows the openness panel."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi

from tests.hub.conftest import People
from tests.hubtools import HubProcess


def test_validate_yaml_and_upload(hub: HubProcess, people: People, unique: str) -> None:
    bad = "---\nlicense: apache-3.0\nmodel-index:\n- name: m\n  results:\n  - task: {type: t}\n---\n"
    r = httpx.post(f"{hub.url}/api/validate-yaml", json={"content": bad, "repoType": "model"})
    assert r.status_code == 400
    messages = [e["message"] for e in r.json()["errors"]]
    assert any("'apache-3.0'" in m for m in messages)
    assert "model-index[0].results[0].dataset must be a mapping with type and name" in messages
    ok = httpx.post(f"{hub.url}/api/validate-yaml", json={"content": "---\ntags: [x]\n---\n", "repoType": "model"})
    assert ok.status_code == 200 and ok.json() == {"errors": [], "warnings": [{"message": 'no "license" field'}]}

    api = HfApi(endpoint=hub.url, token=people.alice)
    repo_id = f"alice/{unique}"
    api.create_repo(repo_id)
    with pytest.raises(ValueError, match=r"apache-3\.0"):
        api.upload_file(path_or_fileobj=bad.encode(), path_in_repo="README.md", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n# ok\n", path_in_repo="README.md", repo_id=repo_id)
    openness = httpx.get(f"{hub.url}/api/models/{repo_id}/openness").json()
    assert openness["license"] == "mit" and openness["mof_class"] is None
    page = httpx.get(f"{hub.url}/{repo_id}").text
    assert 'class="panel openness"' in page and "CycloneDX ML-BOM" in page
