"""The web UI over HTTP against a real hub process (SQLite and PostgreSQL): pages, visibility, card sanitisation,
sign-in and token management with their CSRF protection."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from openckpt.format.manifest import Architecture, Dataset, Lineage, Manifest, Training
from tests.hubtools import HubProcess

CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: text-generation
tags: [gpt2, demo]
datasets: [wikitext]
base_model: openai-community/gpt2
---
# Tiny GPT

A **small** GPT-2 style model fine-tuned on WikiText and saved with openckpt.

## Results

| metric | value |
|---|---|
| loss | 2.31 |
| eval loss | 2.41 |

## Usage

```python
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained("alice/tiny-gpt")
```

> Trained for 3 epochs; `openckpt.json` records every file's digest.
"""

HOSTILE_CARD = """---
license: mit
---
# Hostile card <script>alert("in-heading")</script>

<script>document.title = "pwned"</script>
<img src="x.png" onerror="alert('onerror')">
<a href="javascript:alert('href')">raw javascript link</a>
<a href="JaVaScRiPt:alert('mixed-case')">mixed case</a>
[markdown javascript link](javascript:alert('md'))
<iframe src="https://example.com/frame"></iframe>
<div style="position:fixed" onclick="alert('click')" onmouseover="alert('over')">styled</div>
<svg onload="alert('svg')"><circle r="4"/></svg>
<form action="/logout" method="post"><button>go</button></form>
<img src="data:image/svg+xml;base64,PHN2Zz4=">

Still **rendered** text. ![diagram](images/arch.png) [notes](docs/../notes.md#usage) [escape](../../etc/passwd)
"""


def demo_manifest() -> str:
    """An ``openckpt.json`` as a fine-tuning run writes it."""
    manifest = Manifest(
        id="ckpt-20260105-001200-step1200",
        created_at="2026-01-05T00:12:00Z",
        software={"openckpt": "0.1.0"},
        architecture=Architecture(
            class_path="transformers.models.gpt2.modeling_gpt2.GPT2LMHeadModel",
            config={"model_type": "gpt2"},
            parameters=124_439_808,
            trainable_parameters=124_439_808,
            parameters_by_dtype={"float32": 124_439_808},
            modules={"transformer": "GPT2Model", "lm_head": "Linear"},
        ),
        training=Training(step=1200, epoch=3, tokens_seen=9_830_400, seed=1234,
                          metrics={"loss": 2.3124, "eval_loss": 2.4071},
                          datasets=[Dataset(name="wikitext", revision="b08601e04326c79dfdd32d625aee71d232d685c3")]),
        lineage=Lineage(base_model="openai-community/gpt2", relation="finetune", license="apache-2.0",
                        parent="ckpt-20260104-235900-step1000"),
    )  # fmt: skip
    return manifest.model_dump_json(indent=2, exclude_none=True)


def publish_model(api: HfApi, repo_id: str, folder: Path, *, private: bool = False) -> dict[str, bytes]:
    """A model repo with a card, a config, LFS weights, a sub-folder and an openckpt manifest; returns its files."""
    files = {
        "README.md": CARD.replace("alice/tiny-gpt", repo_id).encode(),
        "config.json": b'{"model_type": "gpt2", "n_layer": 2}',
        "model.safetensors": bytes(range(256)) * 400,
        "openckpt.json": demo_manifest().encode(),
        "images/arch.png": b"\x89PNG\r\n\x1a\nnot really",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    api.create_repo(repo_id, private=private)
    api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="Add checkpoint at step 1200")
    return files


@dataclass
class Site:
    hub: HubProcess
    alice: str
    bob: str

    @contextmanager
    def client(self, token: str | None = None) -> Iterator[httpx.Client]:
        """A browser-like client; with ``token``, signed in through the login form."""
        with httpx.Client(base_url=self.hub.url, timeout=30) as client:
            if token is not None:
                login(client, token)
            yield client


def csrf_of(html: str, action: str = "") -> str:
    """The CSRF field of the first form posting to ``action`` (any form if empty)."""
    found = re.search(
        rf'action="{action}[^"]*"[^>]*>\s*<input type="hidden" name="csrf" value="([0-9a-f]{{64}})"', html
    )
    assert found, f"no CSRF field in a form to {action!r}"
    return found.group(1)


def login(client: httpx.Client, token: str) -> httpx.Response:
    page = client.get("/login")
    assert page.status_code == 200
    response = client.post("/login", data={"token": token, "csrf": csrf_of(page.text, "/login"), "next": "/"})
    assert response.status_code == 303, response.text
    return response


@pytest.fixture(scope="module")
def site(hub: HubProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    alice, bob = hub.create_user("alice"), hub.create_user("bob")
    hub.create_org("acme", {"alice": "admin"})
    api = HfApi(endpoint=hub.url, token=alice)
    root = tmp_path_factory.mktemp("ui")
    for repo_id, private in (("alice/tiny-gpt", False), ("alice/hidden-gpt", True), ("acme/acme-bert", False)):
        (root / repo_id).mkdir(parents=True)
        publish_model(api, repo_id, root / repo_id, private=private)
    api.create_tag("alice/tiny-gpt", tag="v1.0", tag_message="first release")
    api.create_branch("alice/tiny-gpt", branch="exp/lr-sweep")
    api.create_repo("alice/hostile")
    api.upload_file(path_or_fileobj=HOSTILE_CARD.encode(), path_in_repo="README.md", repo_id="alice/hostile")
    api.create_repo("alice/wikitext-mini", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"text\nhello\n", path_in_repo="data/train.csv", repo_id="alice/wikitext-mini",
                    repo_type="dataset", commit_message="Add the training split")  # fmt: skip
    yield Site(hub, alice, bob)


def _get(client: httpx.Client, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, f"{path}: {response.status_code} {response.text[:500]}"
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def test_home_search_and_lists(site: Site) -> None:
    with site.client() as client:
        home = _get(client, "/")
        assert 'action="/search"' in home and "alice/</span><strong>tiny-gpt" in home
        assert "hidden-gpt" not in home
        found = _get(client, "/search?q=tiny")
        assert 'href="/alice/tiny-gpt"' in found and "acme-bert" not in found
        assert 'href="/acme"' in _get(client, "/search?q=acm")
        models = _get(client, "/models")
        assert all(f'href="/{r}"' in models for r in ("alice/tiny-gpt", "acme/acme-bert", "alice/hostile"))
        assert "hidden-gpt" not in models
        by_author = _get(client, "/models?author=acme")
        assert 'href="/acme/acme-bert"' in by_author and 'href="/alice/tiny-gpt"' not in by_author
        by_tag = _get(client, "/models?tag=demo&sort=createdAt")
        assert 'href="/alice/tiny-gpt"' in by_tag and 'href="/alice/hostile"' not in by_tag
        by_library = _get(client, "/models?library=transformers&search=tiny")
        assert 'href="/alice/tiny-gpt"' in by_library and "acme-bert" not in by_library
        datasets = _get(client, "/datasets")
        assert 'href="/datasets/alice/wikitext-mini"' in datasets and "tiny-gpt" not in datasets


def test_sort_by_downloads(site: Site) -> None:
    with site.client() as client:
        for _ in range(3):  # a model's downloads count GETs of config.json
            assert client.get("/acme/acme-bert/resolve/main/config.json").status_code == 200
        page = _get(client, "/models?sort=downloads")
        assert page.index('href="/acme/acme-bert"') < page.index('href="/alice/tiny-gpt"')
        assert "<strong>Most downloads</strong>" in page
        assert _get(client, "/models?sort=bogus").count("<strong>Recently updated</strong>") == 1


def test_repo_page(site: Site) -> None:
    with site.client() as client:
        page = _get(client, "/alice/tiny-gpt")
        # the card: front matter as a table, never raw; markdown rendered; relative images point at the files
        assert "<h1>Tiny GPT</h1>" in page and "<strong>small</strong>" in page and "<td>2.31</td>" in page
        assert "library_name:" not in page and '<th scope="row">pipeline_tag</th>' in page
        # files with sizes and download links, folders linked
        assert "102 kB" in page and 'href="/alice/tiny-gpt/resolve/main/model.safetensors"' in page
        assert 'href="/alice/tiny-gpt/tree/main/images"' in page
        # the openckpt panel
        for text in ("openckpt checkpoint", "transformers.models.gpt2.modeling_gpt2.GPT2LMHeadModel", "124M",
                     "124,439,808", "float32", "1200", "eval_loss", "2.4071", "wikitext", "finetune", "apache-2.0",
                     "ckpt-20260104-235900-step1000", 'href="/openai-community/gpt2"'):  # fmt: skip
            assert text in page, text
        # refs and history
        assert "2 branches · 1 tag" in page and "Add checkpoint at step 1200" in page
        assert 'href="/alice/tiny-gpt/refs"' in page
        download = client.get("/alice/tiny-gpt/resolve/main/model.safetensors")
        assert download.content == bytes(range(256)) * 400
        assert "<h1>Tiny GPT</h1>" in _get(client, "/alice/tiny-gpt?rev=v1.0")
        assert "Revision not found" in _get(client, "/alice/tiny-gpt?rev=nope", 404)


def test_repo_sub_pages(site: Site) -> None:
    with site.client() as client:
        tree = _get(client, "/alice/tiny-gpt/tree/main/images")
        assert "arch.png" in tree and 'href="/alice/tiny-gpt/resolve/main/images/arch.png"' in tree
        assert "config.json" not in tree
        assert "File or folder not found" in _get(client, "/alice/tiny-gpt/tree/main/nothing", 404)
        slashed = _get(client, "/alice/tiny-gpt/tree/exp%2Flr-sweep")
        assert 'href="/alice/tiny-gpt/resolve/exp%2Flr-sweep/config.json"' in slashed
        assert "lr-sweep" in slashed and "model.safetensors" in slashed
        blob = _get(client, "/alice/tiny-gpt/blob/main/config.json")
        assert "&#34;model_type&#34;: &#34;gpt2&#34;" in blob or "&quot;model_type&quot;" in blob
        assert "No preview: this is a binary file." in _get(client, "/alice/tiny-gpt/blob/main/images/arch.png")
        commits = _get(client, "/alice/tiny-gpt/commits/main")
        assert "Add checkpoint at step 1200" in commits and "initial commit" in commits
        sha = re.search(r'href="/alice/tiny-gpt/commit/([0-9a-f]{40})"', commits)
        assert sha is not None
        commit = _get(client, f"/alice/tiny-gpt/commit/{sha.group(1)}")
        assert "5 changed files" in commit and "openckpt.json" in commit and ">added<" in commit
        refs = _get(client, "/alice/tiny-gpt/refs")
        assert all(n in refs for n in ("main", "exp/lr-sweep", "v1.0", "first release"))
        dataset = _get(client, "/datasets/alice/wikitext-mini")
        assert 'href="/datasets/alice/wikitext-mini/tree/main/data"' in dataset
        assert "No dataset card" in dataset
        data = _get(client, "/datasets/alice/wikitext-mini/tree/main/data")
        assert 'href="/datasets/alice/wikitext-mini/resolve/main/data/train.csv"' in data
        assert "Add the training split" in _get(client, "/datasets/alice/wikitext-mini/commits/main")


def test_user_and_org_pages(site: Site) -> None:
    with site.client() as client:
        alice = _get(client, "/alice")
        assert 'href="/alice/tiny-gpt"' in alice and 'href="/datasets/alice/wikitext-mini"' in alice
        assert 'href="/acme"' in alice and "hidden-gpt" not in alice
        acme = _get(client, "/acme")
        assert "organisation" in acme and 'href="/alice"' in acme and 'href="/acme/acme-bert"' in acme
        assert "Not found" in _get(client, "/nobody-here", 404)
    with site.client(site.alice) as client:
        assert 'href="/alice/hidden-gpt"' in _get(client, "/alice")


def test_private_repo_is_404_as_if_absent(site: Site) -> None:
    pages = ("/alice/hidden-gpt", "/alice/hidden-gpt/tree/main", "/alice/hidden-gpt/commits/main",
             "/alice/hidden-gpt/refs", "/alice/hidden-gpt/blob/main/config.json")  # fmt: skip
    for session in (site.client(), site.client(site.bob)):
        with session as client:
            for path in pages:
                hidden = _get(client, path, 404)
                absent = _get(client, path.replace("hidden-gpt", "never-existed"), 404)
                assert hidden == absent.replace("never-existed", "hidden-gpt")
                assert "124M" not in hidden
            assert "hidden-gpt" not in _get(client, "/search?q=hidden")
    with site.client(site.alice) as owner:
        page = _get(owner, "/alice/hidden-gpt")
        assert "private" in page and "124M" in page


def test_routes_leave_the_api_alone(site: Site) -> None:
    with site.client() as client:
        assert client.get("/api/models").headers["content-type"].startswith("application/json")
        info = client.get("/api/models/alice/tiny-gpt")
        assert info.status_code == 200 and info.json()["id"] == "alice/tiny-gpt"
        assert client.get("/alice/tiny-gpt/resolve/main/config.json").content.startswith(b'{"model_type"')
        assert client.get("/api/models/alice/hidden-gpt").status_code == 404
        assert client.get("/static/hub.css").headers["content-type"].startswith("text/css")
        assert client.get("/api/nothing").headers["content-type"].startswith("application/json")
        assert "Not found" in _get(client, "/settings/anything", 404)  # reserved first segments are no owners


def test_card_is_sanitised(site: Site) -> None:
    with site.client() as client:
        response = client.get("/alice/hostile")
        assert response.status_code == 200
        page = response.text
        card = page.split('<div class="markdown">', 1)[1].split("</article>", 1)[0]
        lowered = card.lower()
        for bad in ("<script", "onerror", "onclick", "onmouseover", "onload", "javascript:", "<iframe", "<form",
                    "style=", "data:image", "<svg", "alert("):  # fmt: skip
            if bad == "javascript:" or bad == "alert(":  # the markdown link stays visible as plain text
                assert bad not in re.sub(r"\[markdown javascript link\]\([^)]*\)", "", lowered), bad
            else:
                assert bad not in lowered, bad
        assert "<strong>rendered</strong>" in card and "raw javascript link" in card
        assert 'rel="noopener noreferrer nofollow"' in card
        # relative links and images point at the repo's files; ones climbing out of it are left alone
        assert re.search(r'src="/alice/hostile/resolve/[0-9a-f]{40}/images/arch.png"', card)
        assert re.search(r'href="/alice/hostile/resolve/[0-9a-f]{40}/notes.md#usage"', card)
        assert 'href="../../etc/passwd"' in card
        assert "<script" not in page.lower()  # nowhere in the page: the UI has no scripts at all
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        assert response.headers["x-frame-options"] == "DENY"


def test_login_and_logout(site: Site) -> None:
    with site.client() as client:
        form = _get(client, "/login")
        nonce = client.cookies.get("openckpt_csrf")
        assert nonce
        bad = client.post("/login", data={"token": "oc_wrong", "csrf": csrf_of(form, "/login")})
        assert bad.status_code == 401 and "not valid" in bad.text
        forged = client.post("/login", data={"token": site.alice, "csrf": "0" * 64})
        assert forged.status_code == 403 and "openckpt_session" not in forged.headers.get("set-cookie", "")
        response = client.post("/login", data={"token": site.alice, "csrf": csrf_of(form, "/login"), "next": "/acme"})
        assert response.status_code == 303 and response.headers["location"] == "/acme"
        cookie = response.headers["set-cookie"].lower()
        assert "openckpt_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert site.alice.lower() not in cookie  # the cookie names a web session, never the token
        home = _get(client, "/")
        assert 'href="/alice" class="me"' in home and 'action="/logout"' in home
        assert client.post("/logout", data={}).status_code == 403
        assert (
            client.post("/logout", data={"csrf": csrf_of(form, "/login")}).status_code == 403
        )  # the login form's token
        out = client.post("/logout", data={"csrf": csrf_of(home, "/logout")})
        assert out.status_code == 303
        assert 'class="me"' not in _get(client, "/")
        offsite = client.post(
            "/login", data={"token": site.alice, "csrf": csrf_of(form, "/login"), "next": "//evil.example"}
        )
        assert offsite.status_code == 303 and offsite.headers["location"] == "/"


def test_token_management(site: Site) -> None:
    with site.client() as anonymous:
        assert anonymous.get("/settings/tokens").headers["location"].startswith("/login")
    with site.client(site.bob) as client:
        page = _get(client, "/settings/tokens")
        csrf = csrf_of(page, "/settings/tokens")
        assert "this session" in page
        create = {"action": "create", "name": "laptop", "role": "read", "csrf": csrf}
        assert client.post("/settings/tokens", data={**create, "csrf": ""}).status_code == 403
        assert client.post("/settings/tokens", data={**create, "csrf": "f" * 64}).status_code == 403
        assert (
            client.post("/settings/tokens", data=create, headers={"Origin": "https://evil.example"}).status_code == 403
        )
        assert client.post("/settings/tokens", data=create, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        with httpx.Client(base_url=site.hub.url) as other:  # another session's form token is no good here
            other_csrf = csrf_of(_get(other, "/login"), "/login")
            assert client.post("/settings/tokens", data={**create, "csrf": other_csrf}).status_code == 403
        created = client.post("/settings/tokens", data=create, headers={"Origin": site.hub.url})
        assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
        secret = re.search(r'value="(oc_[A-Za-z0-9_-]+)"', created.text)
        assert secret is not None and "shown this once" in created.text
        api = HfApi(endpoint=site.hub.url, token=secret.group(1))
        assert api.whoami()["auth"]["accessToken"] == {"displayName": "laptop", "role": "read"}
        listed = _get(client, "/settings/tokens")
        assert (
            "<strong>laptop</strong>" in listed
            and secret.group(1) not in listed
            and f"oc_…{secret.group(1)[-4:]}" in listed
        )
        token_id = re.search(r'name="id" value="(\d+)"', listed.split("<strong>laptop</strong>", 1)[1])
        assert token_id is not None
        revoke = {"action": "revoke", "id": token_id.group(1)}
        assert client.post("/settings/tokens", data=revoke).status_code == 403
        assert client.post("/settings/tokens", data={**revoke, "csrf": csrf}).status_code == 303
        assert "<strong>laptop</strong>" not in _get(client, "/settings/tokens")
        whoami = httpx.get(f"{site.hub.url}/api/whoami-v2", headers={"Authorization": f"Bearer {secret.group(1)}"})
        assert whoami.status_code == 401
        assert client.post("/settings/tokens", data={**revoke, "csrf": csrf}).status_code == 403  # already revoked


def test_read_session_cannot_mint_write_tokens(site: Site) -> None:
    read_token = site.hub.create_user("reader", role="read")
    with site.client(read_token) as client:
        page = _get(client, "/settings/tokens")
        assert '<option value="write">' not in page
        data = {"action": "create", "name": "escalate", "role": "write", "csrf": csrf_of(page, "/settings/tokens")}
        assert client.post("/settings/tokens", data=data).status_code == 403
        assert client.post("/settings/tokens", data={**data, "role": "read"}).status_code == 200


def test_revoking_the_session_token_signs_out(site: Site) -> None:
    token = site.hub.create_user("carol")
    with site.client(token) as client:
        page = _get(client, "/settings/tokens")
        own = re.search(r'name="id" value="(\d+)"', page)
        assert own is not None
        response = client.post(
            "/settings/tokens", data={"action": "revoke", "id": own.group(1), "csrf": csrf_of(page, "/settings/tokens")}
        )
        assert response.status_code == 303 and response.headers["location"] == "/"
        assert 'openckpt_session=""' in response.headers["set-cookie"]
    with site.client() as client:  # a browser with an older hub's cookie (the token itself) is signed out, cleared
        client.cookies.set("openckpt_token", token)
        response = client.get("/alice/tiny-gpt")
        assert response.status_code == 200 and 'class="me"' not in response.text
        assert 'openckpt_token=""' in response.headers["set-cookie"]


def test_invalid_manifest_is_reported_not_fatal(site: Site, tmp_path: Path) -> None:
    api = HfApi(endpoint=site.hub.url, token=site.alice)
    api.create_repo("alice/broken-manifest")
    api.upload_file(path_or_fileobj=b'{"format": "openckpt", "id": 5}', path_in_repo="openckpt.json",
                    repo_id="alice/broken-manifest")  # fmt: skip
    with site.client() as client:
        page = _get(client, "/alice/broken-manifest")
        assert "openckpt.json is not a valid manifest" in page
