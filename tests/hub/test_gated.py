"""Gated repos with the real ``huggingface_hub``: downloads raise ``GatedRepoError`` until access is granted;
requests (API or the web form) are listed, accepted, rejected and cancelled with ``HfApi``'s own methods."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

from tests.hub.conftest import People
from tests.hub.test_ui import csrf_of, login
from tests.hubtools import HubProcess

CARD = """---
license: apache-2.0
extra_gated_prompt: You agree to not use the model to conduct experiments that cause harm to human subjects.
extra_gated_fields:
  Company: text
  Affiliation:
    type: select
    options: [Student, Research lab, Company]
  I agree to use this model for non-commercial use ONLY: checkbox
---
# Gated model
"""


def _publish(hub: HubProcess, token: str, repo_id: str, gated: str) -> HfApi:
    api = HfApi(endpoint=hub.url, token=token)
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b'{"model_type": "gpt2"}', path_in_repo="config.json", repo_id=repo_id)
    api.update_repo_settings(repo_id, gated=gated)  # type: ignore[arg-type]
    return api


def _download(hub: HubProcess, repo_id: str, token: str | bool, cache: Path) -> bytes:
    path = hf_hub_download(repo_id, "config.json", endpoint=hub.url, token=token, cache_dir=cache)
    return Path(path).read_bytes()


def _ask(hub: HubProcess, repo_id: str, token: str, fields: dict[str, object]) -> str:
    r = httpx.post(f"{hub.url}/api/models/{repo_id}/user-access-request/request", json={"fields": fields},
                   headers={"authorization": f"Bearer {token}"})  # fmt: skip
    assert r.status_code == 200, r.text
    status: str = r.json()["status"]
    return status


def test_manual_gate_request_accept_grant_reject(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    repo_id = f"alice/{unique}"
    owner = _publish(hub, people.alice, repo_id, "manual")

    # metadata stays visible, like on the Hub; the card too
    info = HfApi(endpoint=hub.url, token=False).model_info(repo_id)
    assert info.gated == "manual" and {s.rfilename for s in info.siblings or []} >= {"config.json", "README.md"}
    assert hf_hub_download(repo_id, "README.md", endpoint=hub.url, token=False, cache_dir=tmp_path / "c0")

    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, False, tmp_path / "anon")
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, people.bob, tmp_path / "bob0")
    assert _download(hub, repo_id, people.alice, tmp_path / "owner") == b'{"model_type": "gpt2"}'

    # bob asks; the request waits in the pending list and bob still cannot download
    assert _ask(hub, repo_id, people.bob, {"Company": "ACME"}) == "pending"
    with pytest.raises(GatedRepoError, match="awaiting a review"):
        _download(hub, repo_id, people.bob, tmp_path / "bob1")
    pending = list(owner.list_pending_access_requests(repo_id))
    assert [(r.username, r.status, r.fields) for r in pending] == [("bob", "pending", {"Company": "ACME"})]
    with pytest.raises(HfHubHTTPError):  # only those who may write to the repo see the requests
        list(HfApi(endpoint=hub.url, token=people.bob).list_pending_access_requests(repo_id))

    owner.accept_access_request(repo_id, "bob")
    assert _download(hub, repo_id, people.bob, tmp_path / "bob2") == b'{"model_type": "gpt2"}'

    # wendy gets access without asking; olga asks and is rejected
    owner.grant_access(repo_id, "wendy")
    assert _download(hub, repo_id, people.wendy, tmp_path / "wendy") == b'{"model_type": "gpt2"}'
    assert _ask(hub, repo_id, people.olga, {}) == "pending"
    owner.reject_access_request(repo_id, "olga", rejection_reason="not a researcher")
    assert [r.username for r in owner.list_rejected_access_requests(repo_id)] == ["olga"]
    assert sorted(str(r.username) for r in owner.list_accepted_access_requests(repo_id)) == ["bob", "wendy"]
    assert _ask(hub, repo_id, people.olga, {}) == "rejected"  # asking again changes nothing
    with pytest.raises(GatedRepoError, match="rejected"):
        _download(hub, repo_id, people.olga, tmp_path / "olga")

    # cancelling bob's access puts him back in the pending list
    owner.cancel_access_request(repo_id, "bob")
    assert [r.username for r in owner.list_pending_access_requests(repo_id)] == ["bob"]
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, people.bob, tmp_path / "bob3")


def test_auto_gate_accepts_at_once(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    repo_id = f"alice/{unique}"
    owner = _publish(hub, people.alice, repo_id, "auto")
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, people.bob, tmp_path / "bob0")
    assert _ask(hub, repo_id, people.bob, {}) == "accepted"
    assert _download(hub, repo_id, people.bob, tmp_path / "bob1") == b'{"model_type": "gpt2"}'
    assert [r.username for r in owner.list_accepted_access_requests(repo_id)] == ["bob"]
    owner.update_repo_settings(repo_id, gated=False)
    assert _download(hub, repo_id, False, tmp_path / "anon") == b'{"model_type": "gpt2"}'


def test_request_with_the_web_form(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    repo_id = f"alice/{unique}"
    owner = _publish(hub, people.alice, repo_id, "manual")
    with httpx.Client(base_url=hub.url, timeout=30) as anonymous:
        page = anonymous.get(f"/{repo_id}")
        assert "gate-form" not in page.text and "to request access" in page.text
    with httpx.Client(base_url=hub.url, timeout=30) as client:
        login(client, people.bob)
        page = client.get(f"/{repo_id}")
        assert "You agree to not use the model" in page.text and "Research lab" in page.text
        action = f"/{repo_id}/ask-access"
        csrf = csrf_of(page.text, action)
        missing = client.post(action, data={"csrf": csrf, "field0": "ACME", "field1": "Student"})
        assert missing.status_code == 400 and "Tick" in missing.text
        forged = client.post(action, data={"csrf": "0" * 64, "field0": "ACME", "field1": "Student", "field2": "on"})
        assert forged.status_code == 403
        done = client.post(action, data={"csrf": csrf, "field0": "ACME", "field1": "Student", "field2": "on"})
        assert done.status_code == 303
        assert "awaiting a review" in client.get(f"/{repo_id}").text
        assert client.get(f"/{repo_id}/blob/main/config.json").status_code == 403
    [request] = owner.list_pending_access_requests(repo_id)
    assert request.username == "bob"
    assert request.fields == {"Company": "ACME", "Affiliation": "Student",
                              "I agree to use this model for non-commercial use ONLY": True}  # fmt: skip
