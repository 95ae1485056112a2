"""Repo settings and organisation pages over HTTP against a real hub process (SQLite and PostgreSQL): the access
form's fields (written into the card's ``extra_gated_fields``, filled by the requester, shown to the reviewer), and
the organisation profile's links to its members page, and the default branch."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
import yaml
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from tests.hub.test_ui_owner import Visitor, owner_hub  # noqa: F401
from tests.hubtools import HubProcess


def _readme(hub: HubProcess, repo_id: str) -> str:
    return httpx.get(
        f"{hub.url}/{repo_id}/resolve/main/README.md", headers={"authorization": f"Bearer {hub.token}"}
    ).text


def _card(hub: HubProcess, repo_id: str) -> dict[str, object]:
    loaded = yaml.safe_load(_readme(hub, repo_id).split("---\n")[1])
    assert isinstance(loaded, dict)
    return loaded


def test_access_form_fields_from_settings_to_review(owner_hub: HubProcess) -> None:  # noqa: F811
    suffix = uuid.uuid4().hex[:6]
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/gated-{suffix}"
    api.create_repo(repo_id)
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n# Gated\n\nKeep me.\n", path_in_repo="README.md", repo_id=repo_id
    )
    repo = f"/{repo_id}"
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    admin.post(f"{repo}/settings", f"{repo}/settings", {"action": "gating", "gated": "manual"})
    fields = {
        "action": "gate-form",
        "fields": "1",
        "heading": "Tell us who you are",
        "prompt": "For research only.",
        "field-0-name": "Company",
        "field-0-type": "text",
    }
    r = admin.post(f"{repo}/settings", f"{repo}/settings", fields)
    assert r.status_code == 200 and "saved=gate-form" in str(r.url)
    # the settings page lists it, with a row for one more
    r = admin.post(
        f"{repo}/settings",
        f"{repo}/settings",
        {
            "action": "gate-form",
            "fields": "3",
            "heading": "Tell us who you are",
            "prompt": "For research only.",
            "field-0-name": "Company",
            "field-0-type": "text",
            "field-1-name": "Use",
            "field-1-type": "select",
            "field-1-options": "Research, Education",
            "field-2-name": "I agree to the terms",
            "field-2-type": "checkbox",
        },
    )
    assert 'name="field-2-name" maxlength="200" value="I agree to the terms"' in r.text
    assert 'name="field-3-name"' in r.text  # the empty row for a new field
    card = _card(owner_hub, repo_id)
    assert card["license"] == "mit" and card["extra_gated_heading"] == "Tell us who you are"
    assert card["extra_gated_fields"] == {
        "Company": "text",
        "Use": {"type": "select", "options": ["Research", "Education"]},
        "I agree to the terms": "checkbox",
    }
    assert _readme(owner_hub, repo_id).endswith("# Gated\n\nKeep me.\n")  # the card's text is kept
    info = api.model_info(repo_id)
    assert info.card_data is not None and info.card_data["extra_gated_prompt"] == "For research only."
    # a second user sees the fields and must fill them
    bob_name = f"bob{suffix}"
    bob = Visitor(owner_hub.url)
    bob.login(owner_hub.create_user(bob_name))
    page = bob.get(repo).text
    assert "Tell us who you are" in page and "For research only." in page
    assert '<option value="Education">' in page and 'name="field2" required' in page
    assert bob.post(repo, f"{repo}/ask-access", {"field0": "ACME"}).status_code == 400  # the rest left out
    answers = {"field0": "ACME", "field1": "Education", "field2": "on"}
    assert bob.post(repo, f"{repo}/ask-access", answers).status_code == 200
    # the reviewer reads the answers, on the page and through the API
    review = admin.get(f"{repo}/settings").text.split("requests-pending")[1].split("</table>")[0]
    assert bob_name in review and "Company: ACME" in review and "Use: Education" in review
    pending = {r.username: r.fields for r in api.list_pending_access_requests(repo_id)}
    assert pending[bob_name] == {"Company": "ACME", "Use": "Education", "I agree to the terms": True}
    # removing a field, and a bad form
    r = admin.post(
        f"{repo}/settings",
        f"{repo}/settings",
        {
            "action": "gate-form",
            "fields": "2",
            "field-0-name": "Company",
            "field-0-type": "text",
            "field-1-name": "Use",
            "field-1-type": "select",
            "field-1-remove": "on",
        },
    )
    assert _card(owner_hub, repo_id)["extra_gated_fields"] == {"Company": "text"}
    assert "extra_gated_heading" not in _card(owner_hub, repo_id)
    bad = {"action": "gate-form", "fields": "1", "field-0-name": "Use", "field-0-type": "select"}
    assert admin.post(f"{repo}/settings", f"{repo}/settings", bad).status_code == 400  # a select without options
    outsider = bob.http.post(f"{repo}/settings", data={"action": "gate-form", "fields": "0"})
    assert outsider.status_code == 403  # no CSRF token of this page: the form is not bob's


def test_org_profile_links_to_member_management(owner_hub: HubProcess) -> None:  # noqa: F811
    suffix = uuid.uuid4().hex[:6]
    org, user = f"org{suffix}", f"uma{suffix}"
    token = owner_hub.create_user(user)
    owner_hub.create_org(org, {"admin": "admin", user: "read"})
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    profile = admin.get(f"/{org}").text
    members = f"/organizations/{org}/members"
    assert f'href="{members}"' in profile and "Manage members and roles" in profile
    assert f'href="/new?owner={org}"' in profile
    assert f'<option value="{org}" selected>' in admin.get(f"/new?owner={org}").text
    # an admin adds a member, changes a role, removes a member, all from that page
    other = f"vic{suffix}"
    owner_hub.create_user(other)
    admin.post(members, members, {"action": "set", "user": other, "role": "write"})
    admin.post(members, members, {"action": "set", "user": user, "role": "admin"})
    page = admin.get(members).text
    assert re.search(rf'aria-label="Role of {other}">.*?<option selected>write</option>', page, re.S)
    assert re.search(rf'aria-label="Role of {user}">.*?<option selected>admin</option>', page, re.S)
    admin.post(members, members, {"action": "remove", "user": other})
    assert f'aria-label="Role of {other}"' not in admin.get(members).text
    # a read member sees the list and no management link
    uma = Visitor(owner_hub.url)
    uma.login(token)
    admin.post(members, members, {"action": "set", "user": user, "role": "read"})
    uma = Visitor(owner_hub.url)
    uma.login(token)
    profile = uma.get(f"/{org}").text
    assert f'href="{members}"' in profile and "Manage members and roles" not in profile
    assert "<form" not in uma.get(members).text.split("</header>")[1]


def test_default_branch_setting(owner_hub: HubProcess) -> None:  # noqa: F811
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/branches-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"main only", path_in_repo="main.txt", repo_id=repo_id)
    api.create_branch(repo_id, branch="dev")
    card = b"---\nlicense: mit\ntags: [dev-tag]\n---\n# The dev card\n"
    dev_head = api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=repo_id, revision="dev").oid
    repo = f"/{repo_id}"
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    page = admin.get(f"{repo}/settings").text
    assert '<option value="main" selected>main</option>' in page and '<option value="dev">dev</option>' in page
    refused = admin.post(f"{repo}/settings", f"{repo}/settings", {"action": "default-branch", "branch": "nope"})
    assert refused.status_code == 400 and "has no branch" in refused.text
    r = admin.post(f"{repo}/settings", f"{repo}/settings", {"action": "default-branch", "branch": "dev"})
    assert r.status_code == 200 and '<option value="dev" selected>dev</option>' in r.text
    # the pages show the default branch
    overview = admin.get(repo).text
    assert "The dev card" in overview and "<strong>dev</strong>" in overview
    assert "README.md" in admin.get(f"{repo}/tree").text
    assert (
        'class="badge default-branch">default</span>' in admin.get(f"{repo}/refs").text.split("<strong>dev</strong>")[1]
    )
    # model_info without a revision follows it, and listings say which branch it is
    info = api.model_info(repo_id)
    assert info.sha == dev_head and info.defaultBranch == "dev"  # type: ignore[attr-defined]
    assert info.card_data is not None and "dev-tag" in (info.tags or [])
    listed = {m.id: m for m in api.list_models(author="admin")}
    assert listed[repo_id].defaultBranch == "dev"  # type: ignore[attr-defined]
    # a client naming a revision gets that one: huggingface_hub names main when given none
    assert "README.md" not in api.list_repo_files(repo_id) and "main.txt" in api.list_repo_files(repo_id)
    assert api.model_info(repo_id, revision="main").sha != dev_head
    # commits to the default branch refresh the card data; the default branch cannot be deleted
    api.upload_file(
        path_or_fileobj=card.replace(b"dev-tag", b"new-tag"), path_in_repo="README.md", repo_id=repo_id, revision="dev"
    )
    assert "new-tag" in (api.model_info(repo_id).tags or [])
    with pytest.raises(HfHubHTTPError) as refused_delete:
        api.delete_branch(repo_id, branch="dev")
    assert refused_delete.value.response.status_code == 400
    r = admin.post(f"{repo}/settings", f"{repo}/settings", {"action": "default-branch", "branch": "main"})
    assert "The dev card" not in admin.get(repo).text and "dev-tag" not in str(api.model_info(repo_id).tags)
    api.delete_branch(repo_id, branch="dev")  # no longer the default


def test_default_branch_through_the_settings_api(owner_hub: HubProcess) -> None:  # noqa: F811
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/api-branch-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id)
    api.create_branch(repo_id, branch="stable")
    url = f"{owner_hub.url}/api/models/{repo_id}/settings"
    headers = {"authorization": f"Bearer {owner_hub.token}"}
    missing = httpx.put(url, json={"defaultBranch": "nope"}, headers=headers)
    assert missing.status_code == 400 and "has no branch" in missing.headers["x-error-message"]
    assert httpx.put(url, json={"defaultBranch": 3}, headers=headers).status_code == 400
    assert httpx.put(url, json={"defaultBranch": "stable"}, headers=headers).status_code == 200
    assert api.model_info(repo_id).defaultBranch == "stable"  # type: ignore[attr-defined]
    api.update_repo_settings(repo_id, private=True)  # the stock client's call leaves it as it is
    assert api.model_info(repo_id).defaultBranch == "stable"  # type: ignore[attr-defined]
