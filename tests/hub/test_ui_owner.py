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
    for path in (f"/{repo_id}/discussions/9", f"/{repo_id}/compare/main...main"):
        response = httpx.get(owner_hub.url + path)
        assert response.status_code == 404 and response.headers["content-type"].startswith("text/html"), path


class Visitor:
    """A browser without JavaScript: cookies, and forms posted with the CSRF token their page carried."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=True, timeout=60)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def csrf(self, path: str, action: str) -> str:
        html = self.get(path).text
        forms = re.findall(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', html, re.S)
        for target, body in forms:
            found = re.search(r'name="csrf" value="([^"]+)"', body)
            if target == action and found:
                return found.group(1)
        raise AssertionError(f"no form posting to {action} on {path}")

    def post(self, page: str, action: str, data: dict[str, str], **kwargs: object) -> httpx.Response:
        return self.http.post(action, data={"csrf": self.csrf(page, action), **data}, **kwargs)  # type: ignore[arg-type]

    def login(self, token: str) -> None:
        r = self.post("/login", "/login", {"token": token, "next": "/"})
        assert r.status_code == 200 and "Log out" in r.text


def test_owner_flow_over_http(owner_hub: HubProcess) -> None:
    """Invite, sign up, create a repo, upload, edit, gate it, review a request; the other user then downloads."""
    suffix = uuid.uuid4().hex[:6]
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    r = admin.post("/admin/users", "/admin/users", {"action": "invite", "name": f"erin{suffix}"})
    link = re.search(r'id="invite-link"[^>]*|value="([^"]*/join\?invite=[^"]+)"', r.text)
    code = re.search(r"/join\?invite=([^\"&]+)", r.text)
    assert link is not None and code is not None
    erin = Visitor(owner_hub.url)
    assert (
        "Sign up by invitation" in erin.get("/join").text
        and "<form" not in erin.get("/join").text.split("</header>")[1]
    )
    assert erin.get(f"/join?invite=erin{suffix}.99999999999.{'0' * 32}").status_code == 403  # forged
    r = erin.post(f"/join?invite={code.group(1)}", "/join", {"invite": code.group(1), "fullname": "Erin E."})
    assert r.status_code == 200 and "Welcome, Erin E." in r.text and "Log out" in erin.get("/").text
    token = re.search(r'id="new-token"|value="(oc_[^"]+)"', r.text)
    assert token is not None
    assert erin.post(f"/join?invite={code.group(1)}", "/join", {"invite": code.group(1)}).status_code == 409  # once
    r = erin.post("/new", "/new", {"owner": f"erin{suffix}", "name": "tiny", "type": "model"})
    assert r.status_code == 200 and r.url.path == f"/erin{suffix}/tiny"
    repo = f"/erin{suffix}/tiny"
    upload = erin.csrf(f"{repo}/upload/main", f"{repo}/upload/main")
    files = [("files", ("model.safetensors", weights(1.0))), ("files", ("notes.txt", b"a\nb\n"))]
    r = erin.http.post(f"{repo}/upload/main", data={"csrf": upload, "title": "Add weights"}, files=files)
    assert r.status_code == 200 and "/commit/" in str(r.url) and "Add weights" in r.text
    r = erin.post(f"{repo}/edit/main/README.md", f"{repo}/edit/main/README.md",
                  {"path": "README.md", "content": "# Tiny\r\nhello\r\n", "title": "Write the card"})  # fmt: skip
    assert r.status_code == 200 and '<span class="l add">+hello</span>' in r.text
    r = erin.post(f"{repo}/settings", f"{repo}/settings", {"action": "gating", "gated": "manual"})
    assert r.status_code == 200 and "Gated, the authors review each request</option>" in r.text
    bob = Visitor(owner_hub.url)
    bob.login(owner_hub.create_user(f"bob{suffix}"))
    assert bob.get(f"{repo}/resolve/main/model.safetensors").status_code in (401, 403)
    page = bob.get(repo).text
    assert 'class="download"' not in page  # no download buttons without access
    assert bob.post(repo, f"{repo}/ask-access", {}).status_code == 200
    r = erin.post(f"{repo}/settings", f"{repo}/settings", {"action": "accepted", "user": f"bob{suffix}"})
    assert r.status_code == 200 and f"bob{suffix}</a>" in r.text.split("Accepted")[1]
    assert bob.get(f"{repo}/resolve/main/model.safetensors").content == weights(1.0)


def test_forms_refuse_a_missing_csrf_token(owner_hub: HubProcess) -> None:
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    assert admin.http.post("/new", data={"name": "nope"}).status_code == 403
    assert admin.http.post("/admin/users", data={"action": "create", "name": "nope"}).status_code == 403
    stranger = Visitor(owner_hub.url)
    assert stranger.get("/admin/users").status_code == 404


INDEXED_CARD = b"""---
pipeline_tag: text-generation
model-index:
- name: tiny
  results:
  - task: {type: text-generation, name: Text Generation}
    dataset: {name: WikiText, type: wikitext}
    metrics:
    - {type: perplexity, name: Perplexity, value: 12.3456}
---
# Tiny
"""


def test_repo_page_shows_weights_results_and_snippets(owner_hub: HubProcess) -> None:
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/page-{uuid.uuid4().hex[:6]}"
    make_model(api, repo_id)
    api.upload_file(path_or_fileobj=INDEXED_CARD, path_in_repo="README.md", repo_id=repo_id)
    html = httpx.get(f"{owner_hub.url}/{repo_id}").text
    weights_panel = html.split('aria-label="Weights"')[1].split("</section>")[0]
    assert "<strong>20</strong> params" in weights_panel and ">F32<" in weights_panel and ">F16<" in weights_panel
    results = html.split('class="files results"')[1].split("</table>")[0]
    assert "Text Generation" in results and "WikiText" in results and "Perplexity" in results and "12.35" in results
    assert f'pipeline("text-generation", model="{repo_id}")' in html
    assert f'snapshot_download("{repo_id}")' in html and f"hf download {repo_id}" in html


def test_resumed_from_links_to_the_commit_of_the_parent_checkpoint(owner_hub: HubProcess) -> None:
    from tests.hub.test_ui import demo_manifest

    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/resume-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id)
    older = demo_manifest().replace("ckpt-20260105-001200-step1200", "ckpt-20260104-235900-step1000")
    first = api.upload_file(path_or_fileobj=older.encode(), path_in_repo="openckpt.json", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"unrelated", path_in_repo="notes.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=demo_manifest().encode(), path_in_repo="openckpt.json", repo_id=repo_id)
    html = httpx.get(f"{owner_hub.url}/{repo_id}").text
    link = f"/{repo_id}/checkpoint/ckpt-20260104-235900-step1000"
    assert f'href="{link}"' in html
    response = httpx.get(owner_hub.url + link)
    assert response.status_code == 303 and response.headers["location"].endswith(f"/commit/{first.oid}")
    assert httpx.get(f"{owner_hub.url}/{repo_id}/checkpoint/nope").status_code == 404


def test_model_tree_shows_a_grandchild_under_its_parent(owner_hub: HubProcess) -> None:
    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    tag = uuid.uuid4().hex[:6]
    chain = [f"admin/base-{tag}", f"admin/child-{tag}", f"admin/grandchild-{tag}"]
    for parent, repo_id in zip([None, *chain], chain, strict=False):
        api.create_repo(repo_id)
        card = f"---\nlicense: mit\n{'base_model: ' + parent if parent else ''}\n---\n# {repo_id}\n"
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id)
    html = httpx.get(f"{owner_hub.url}/{chain[0]}").text
    tree = html.split('class="panel model-tree"')[1].split("</section>")[0]
    assert re.search(rf'<li class="depth-1">↓\s*<a href="/{chain[1]}">', tree)
    assert re.search(rf'<li class="depth-2">↓\s*<a href="/{chain[2]}">', tree)
    assert "style=" not in tree  # the CSP refuses inline styles: depth must come from classes


def test_downloads_count_as_the_hub_counts_them(owner_hub: HubProcess, tmp_path: Path) -> None:
    """One download per snapshot (its config.json), none for the other files; a browser's GET of config.json counts."""
    from huggingface_hub import snapshot_download

    api = HfApi(endpoint=owner_hub.url, token=owner_hub.token)
    repo_id = f"admin/counted-{uuid.uuid4().hex[:6]}"
    make_model(api, repo_id)
    api.upload_file(path_or_fileobj=b'{"model_type": "gpt2"}', path_in_repo="config.json", repo_id=repo_id)
    assert api.model_info(repo_id).downloads == 0
    snapshot_download(repo_id, endpoint=owner_hub.url, token=owner_hub.token, cache_dir=tmp_path / "cache")
    assert api.model_info(repo_id).downloads == 1
    assert httpx.get(f"{owner_hub.url}/{repo_id}/resolve/main/model.safetensors").status_code == 200
    assert api.model_info(repo_id).downloads == 1
    assert httpx.get(f"{owner_hub.url}/{repo_id}/resolve/main/config.json").status_code == 200
    assert api.model_info(repo_id).downloads == 2


def test_folder_upload_keeps_paths_and_stale_edits_are_refused(owner_hub: HubProcess) -> None:
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    name = f"files-{uuid.uuid4().hex[:6]}"
    admin.post("/new", "/new", {"owner": "admin", "name": name, "type": "model"})
    repo = f"/admin/{name}"
    token = admin.csrf(f"{repo}/upload/main", f"{repo}/upload/main")
    files = [("files", ("run/a.txt", b"one\n")), ("files", ("run/sub/b.txt", b"two\n")), ("files", ("", b""))]
    r = admin.http.post(f"{repo}/upload/main", data={"csrf": token, "folder": "ckpt"}, files=files)
    assert r.status_code == 200 and "ckpt/run/sub/b.txt" in r.text
    edit = admin.get(f"{repo}/edit/main/ckpt/run/a.txt").text
    parent = re.search(r'name="parent" value="([0-9a-f]{40})"', edit)
    assert parent is not None
    csrf = admin.csrf(f"{repo}/edit/main/ckpt/run/a.txt", f"{repo}/edit/main/ckpt/run/a.txt")
    form = {"csrf": csrf, "parent": parent.group(1), "path": "ckpt/run/a.txt", "content": "first\n"}
    assert admin.http.post(f"{repo}/edit/main/ckpt/run/a.txt", data=form).status_code == 200
    stale = admin.http.post(f"{repo}/edit/main/ckpt/run/a.txt", data={**form, "content": "second\n"})
    assert stale.status_code == 412 and "text/html" in stale.headers["content-type"]  # the page was out of date
    r = admin.post(f"{repo}/delete/main/ckpt/run/sub/b.txt", f"{repo}/delete/main/ckpt/run/sub/b.txt", {})
    assert r.status_code == 200 and '<span class="badge deleted">deleted</span>' in r.text
    assert admin.get(f"{repo}/resolve/main/ckpt/run/a.txt").content == b"first\n"


def test_settings_visibility_move_and_delete(owner_hub: HubProcess) -> None:
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    name = f"moved-{uuid.uuid4().hex[:6]}"
    admin.post("/new", "/new", {"owner": "admin", "name": name, "type": "dataset"})
    repo = f"/datasets/admin/{name}"
    admin.post(f"{repo}/settings", f"{repo}/settings", {"action": "visibility", "visibility": "private"})
    assert httpx.get(owner_hub.url + repo).status_code == 404  # private: hidden from others
    r = admin.post(f"{repo}/settings", f"{repo}/settings", {"action": "move", "to": f"admin/{name}-2"})
    assert r.status_code == 200 and r.url.path == f"{repo}-2/settings"
    wrong = admin.post(f"{repo}-2/settings", f"{repo}-2/settings", {"action": "delete", "confirm": name})
    assert wrong.status_code == 400 and admin.get(f"{repo}-2").status_code == 200
    r = admin.post(f"{repo}-2/settings", f"{repo}-2/settings", {"action": "delete", "confirm": f"admin/{name}-2"})
    assert r.status_code == 200 and admin.get(f"{repo}-2").status_code == 404


def test_admin_manages_users_and_orgs(owner_hub: HubProcess) -> None:
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    user, org = f"uma{uuid.uuid4().hex[:6]}", f"org{uuid.uuid4().hex[:6]}"
    r = admin.post("/admin/users", "/admin/users", {"action": "create", "name": user})
    first = re.search(r'value="(oc_[^"]+)"', r.text)
    assert first is not None
    uma = Visitor(owner_hub.url)
    uma.login(first.group(1))
    r = admin.post("/admin/users", "/admin/users", {"action": "reset", "name": user})
    second = re.search(r'value="(oc_[^"]+)"', r.text)
    assert second is not None and "Log out" not in uma.get("/").text  # the old token and its session are gone
    uma.login(second.group(1))
    admin.post("/admin/users", "/admin/users", {"action": "org", "name": org, "admin_user": "admin"})
    members = f"/organizations/{org}/members"
    admin.post(members, members, {"action": "set", "user": user, "role": "write"})
    assert f'aria-label="Role of {user}"' in admin.get(members).text
    uma = Visitor(owner_hub.url)
    uma.login(second.group(1))  # a new session sees the new membership
    assert f'<option value="{org}"' in uma.get("/new").text
    last_admin = admin.post(members, members, {"action": "remove", "user": "admin"})
    assert last_admin.status_code == 400  # an organisation keeps one admin
    admin.post("/admin/users", "/admin/users", {"action": "disable", "name": user})
    assert "Log out" not in uma.get("/").text


def test_profile_and_settings_links(owner_hub: HubProcess) -> None:
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    page = admin.get("/settings").text
    assert 'href="/settings/tokens"' in page and 'href="/settings/keys"' in page
    admin.post("/settings", "/settings", {"fullname": "The Admin"})
    assert 'value="The Admin"' in admin.get("/settings").text


def test_open_and_closed_sign_up(tmp_path: Path) -> None:
    closed = start_hub(tmp_path / "closed" / "data")
    try:
        page = httpx.get(f"{closed.url}/join").text
        assert "Sign-up is closed" in page and 'action="/join"' not in page
        assert 'href="/join"' not in httpx.get(f"{closed.url}/").text  # no sign-up link in the header
    finally:
        closed.stop()
    hub = start_hub(tmp_path / "open" / "data", env={"OPENCKPT_SIGNUP": "open"})
    try:
        visitor = Visitor(hub.url)
        assert 'href="/join"' in visitor.get("/").text
        r = visitor.post("/join", "/join", {"name": "newcomer", "fullname": ""})
        assert r.status_code == 200 and "Welcome, newcomer" in r.text
        assert '<a href="/newcomer" class="me">newcomer</a>' in visitor.get("/").text
        again = Visitor(hub.url).post("/join", "/join", {"name": "newcomer"})
        assert again.status_code == 409 and "already exists" in again.text
        reserved = Visitor(hub.url).post("/join", "/join", {"name": "admin"})
        assert reserved.status_code in (400, 409)
    finally:
        hub.stop()


def test_upload_form_takes_files_larger_than_other_forms(owner_hub: HubProcess) -> None:
    """Other forms stop at a few MB; the upload form takes a file past that, stored with Git LFS."""
    admin = Visitor(owner_hub.url)
    admin.login(owner_hub.token)
    name = f"big-{uuid.uuid4().hex[:6]}"
    admin.post("/new", "/new", {"owner": "admin", "name": name, "type": "model"})
    repo = f"/admin/{name}"
    data = np.random.default_rng(0).bytes(6_000_000)
    token = admin.csrf(f"{repo}/upload/main", f"{repo}/upload/main")
    r = admin.http.post(f"{repo}/upload/main", data={"csrf": token}, files=[("files", ("big.bin", data))])
    assert r.status_code == 200 and "big.bin" in r.text
    assert admin.get(f"{repo}/resolve/main/big.bin").content == data
    assert "Git LFS" in admin.get(f"{repo}/blob/main/big.bin").text
    edit = admin.http.post(f"{repo}/edit/main/x.txt", data={"content": "x" * 6_000_000})
    assert edit.status_code == 413
