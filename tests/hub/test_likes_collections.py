"""Likes and collections through the stock client against a live hub (SQLite and PostgreSQL): liking (the Hub's
``POST …/like``, which the client has no method for), ``unlike``, ``list_repo_likers`` and ``list_liked_repos``,
like counts in ``model_info`` and ``list_models(sort="likes")``; every collection call of ``HfApi``, private
collections, private repos inside public collections, the ``hf collections`` CLI, the older client release, and
the web UI's like button and collection page."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests import zygote
from tests.hub.conftest import Client, People, client_env
from tests.hubtools import HubProcess

REPOS = {"alice/liked": False, "alice/other": False, "alice/hidden": True, "lab/shared": False}
SLUG = re.compile(r"(?P<owner>[^/]+)/(?P<title>[a-z0-9-]*)-(?P<id>[0-9a-f]{24})")


@pytest.fixture(scope="module")
def world(hub: HubProcess, people: People) -> People:
    """Alice's repos of :data:`REPOS` (``hidden`` private) and one of the org ``lab``."""
    alice = HfApi(endpoint=hub.url, token=people.alice)
    for repo_id, private in REPOS.items():
        alice.create_repo(repo_id, private=private)
    alice.create_repo("alice/data", repo_type="dataset")
    return people


def _api(hub: HubProcess, token: str | None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or False)


def _like(hub: HubProcess, token: str, repo_id: str, *, kind: str = "models") -> httpx.Response:
    """What the Hub's like button sends (the client has ``unlike`` only)."""
    headers = {"authorization": f"Bearer {token}"}
    return httpx.post(f"{hub.url}/api/{kind}/{repo_id}/like", headers=headers, timeout=30)


def test_likes_count_in_model_info_likers_and_liked_repos(hub: HubProcess, world: People) -> None:
    for token in (world.bob, world.wendy, world.olga, world.bob):  # a second like is a no-op
        assert _like(hub, token, "alice/liked").status_code == 200
    anon = _api(hub, None)
    assert anon.model_info("alice/liked").likes == 3
    assert {u.username for u in anon.list_repo_likers("alice/liked")} == {"bob", "wendy", "olga"}
    assert anon.list_liked_repos("bob").models == ["alice/liked"]

    _api(hub, world.bob).unlike("alice/liked")
    _api(hub, world.bob).unlike("alice/liked")  # unliking what one does not like is a no-op
    assert anon.model_info("alice/liked").likes == 2
    assert "alice/liked" not in anon.list_liked_repos("bob").models
    assert _api(hub, world.wendy).list_liked_repos().models == ["alice/liked"]  # the caller's own, by whoami

    # paged by Link, as the client follows it
    first = httpx.get(f"{hub.url}/api/models/alice/liked/likers", params={"limit": 1}, timeout=30)
    assert len(first.json()) == 1 and 'rel="next"' in first.headers["link"]
    assert {"user", "fullname", "avatarUrl"} <= set(first.json()[0])

    # a read-only token reads but does not like
    assert _like(hub, world.alice_read, "alice/other").status_code == 403
    # datasets too
    assert _like(hub, world.bob, "alice/data", kind="datasets").status_code == 200
    assert anon.list_liked_repos("bob").datasets == ["alice/data"]
    assert anon.dataset_info("alice/data").likes == 1


def test_private_repos_keep_their_likes_to_those_who_see_them(hub: HubProcess, world: People) -> None:
    assert _like(hub, world.bob, "alice/hidden").status_code == 404
    with pytest.raises(RepositoryNotFoundError):
        _api(hub, world.bob).unlike("alice/hidden")
    assert _like(hub, world.alice, "alice/hidden").status_code == 200
    with pytest.raises(RepositoryNotFoundError):
        list(_api(hub, world.bob).list_repo_likers("alice/hidden"))
    assert "alice/hidden" in _api(hub, world.alice).list_liked_repos("alice").models
    assert "alice/hidden" not in _api(hub, world.bob).list_liked_repos("alice").models
    assert "alice/hidden" not in _api(hub, None).list_liked_repos("alice").models


def test_concurrent_likes_each_count_once(hub: HubProcess, world: People) -> None:
    tokens = [world.bob, world.wendy, world.olga, world.admin] * 3  # each account likes three times at once
    with ThreadPoolExecutor(len(tokens)) as pool:
        codes = list(pool.map(lambda token: _like(hub, token, "lab/shared").status_code, tokens))
    assert codes == [200] * len(tokens)
    assert _api(hub, None).model_info("lab/shared").likes == 4
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda token: _api(hub, token).unlike("lab/shared"), [world.bob, world.wendy] * 3))
    assert _api(hub, None).model_info("lab/shared").likes == 2


def test_list_models_sorts_by_likes(hub: HubProcess, world: People) -> None:
    for token in (world.bob, world.wendy):
        _like(hub, token, "alice/other")
    _like(hub, world.olga, "alice/other")
    found = [(m.id, m.likes) for m in _api(hub, world.bob).list_models(author="alice", sort="likes")]
    counts = [likes for _, likes in found]
    assert counts == sorted(counts, reverse=True) and found[0] == ("alice/other", 3)


def test_collections_through_the_stock_client(hub: HubProcess, world: People) -> None:
    alice = _api(hub, world.alice)
    made = alice.create_collection("ICCV 2026 picks!", description="what I presented")
    slug = SLUG.fullmatch(made.slug)
    assert slug and slug["owner"] == "alice" and slug["title"] == "iccv-2026-picks"
    assert made.url == f"{hub.url}/collections/{made.slug}" and made.items == [] and made.private is False
    assert made.description == "what I presented" and made.upvotes == 0 and made.theme
    with pytest.raises(HfHubHTTPError) as conflict:
        alice.create_collection("ICCV 2026 picks!")
    assert conflict.value.response.status_code == 409
    assert alice.create_collection("ICCV 2026 picks!", exists_ok=True).slug == made.slug

    alice.add_collection_item(made.slug, "alice/liked", "model", note="the **best** one")
    alice.add_collection_item(made.slug, "alice/data", "dataset")
    alice.add_collection_item(made.slug, "2307.09288", "paper")
    other = alice.create_collection("Elsewhere")
    got = alice.add_collection_item(made.slug, other.slug, "collection")
    assert [(i.item_type, i.item_id, i.position) for i in got.items] == [
        ("model", "alice/liked", 0),
        ("dataset", "alice/data", 1),
        ("paper", "2307.09288", 2),
        ("collection", other.slug, 3),
    ]
    assert got.items[0].note == "the **best** one" and got.items[1].note is None
    with pytest.raises(HfHubHTTPError) as twice:
        alice.add_collection_item(made.slug, "alice/liked", "model")
    assert twice.value.response.status_code == 409
    assert len(alice.add_collection_item(made.slug, "alice/liked", "model", exists_ok=True).items) == 4
    with pytest.raises(HfHubHTTPError) as missing:
        alice.add_collection_item(made.slug, "alice/nope", "model")
    assert missing.value.response.status_code == 404

    paper = got.items[2].item_object_id
    alice.update_collection_item(made.slug, paper, note="Llama 2", position=0)
    items = alice.get_collection(made.slug).items
    assert [(i.item_id, i.position, i.note) for i in items][:2] == [
        ("2307.09288", 0, "Llama 2"),
        ("alice/liked", 1, "the **best** one"),
    ]
    alice.delete_collection_item(made.slug, paper)
    alice.delete_collection_item(made.slug, paper, missing_ok=True)
    with pytest.raises(HfHubHTTPError):
        alice.delete_collection_item(made.slug, paper)

    renamed = alice.update_collection_metadata(made.slug, title="ICCV Oct 2026", theme="green", position=0)
    assert renamed.slug.endswith(made.slug[-24:]) and renamed.slug != made.slug and renamed.theme == "green"
    assert renamed.position == 0 and alice.get_collection(made.slug).title == "ICCV Oct 2026"  # old slugs work
    listed = list(alice.list_collections(owner="alice"))
    assert {c.slug for c in listed} == {renamed.slug, other.slug}
    assert [c.slug for c in alice.list_collections(item="models/alice/liked")] == [renamed.slug]
    assert [c.slug for c in alice.list_collections(item="papers/2307.09288")] == []
    assert len(list(alice.list_collections(owner="alice", limit=1))) == 1

    with pytest.raises(HfHubHTTPError) as refused:
        _api(hub, world.bob).add_collection_item(renamed.slug, "alice/other", "model")
    assert refused.value.response.status_code == 403
    alice.delete_collection(other.slug)
    assert [i.item_type for i in alice.get_collection(renamed.slug).items] == ["model", "dataset"]  # its item went
    alice.delete_collection(other.slug, missing_ok=True)
    with pytest.raises(HfHubHTTPError) as gone:
        alice.get_collection(other.slug)
    assert gone.value.response.status_code == 404


def test_private_collections_and_private_items(hub: HubProcess, world: People) -> None:
    alice, bob = _api(hub, world.alice), _api(hub, world.bob)
    secret = alice.create_collection("Secret plans", private=True)
    public = alice.create_collection("Open list")
    alice.add_collection_item(public.slug, "alice/hidden", "model", note="private repo")
    alice.add_collection_item(public.slug, "alice/liked", "model")
    alice.add_collection_item(public.slug, secret.slug, "collection")

    for outsider in (bob, _api(hub, None)):
        with pytest.raises(HfHubHTTPError) as hidden:
            outsider.get_collection(secret.slug)
        assert hidden.value.response.status_code == 404
        assert secret.slug not in {c.slug for c in outsider.list_collections(owner="alice")}
        assert [i.item_id for i in outsider.get_collection(public.slug).items] == ["alice/liked"]
    assert [i.item_id for i in alice.get_collection(public.slug).items] == ["alice/hidden", "alice/liked", secret.slug]
    assert secret.slug in {c.slug for c in alice.list_collections(owner="alice")}
    assert [c.slug for c in bob.list_collections(item="models/alice/hidden")] == []

    # an organisation's private collection: its members see it, writers change it
    org = alice.create_collection("Lab only", namespace="lab", private=True)
    assert _api(hub, world.olga).get_collection(org.slug).title == "Lab only"
    _api(hub, world.wendy).add_collection_item(org.slug, "lab/shared", "model")
    with pytest.raises(HfHubHTTPError) as reader:
        _api(hub, world.olga).update_collection_metadata(org.slug, title="mine now")
    assert reader.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError):
        bob.get_collection(org.slug)
    with pytest.raises(HfHubHTTPError) as namespace:
        bob.create_collection("Not mine", namespace="lab")
    assert namespace.value.response.status_code == 403
    alice.update_collection_metadata(secret.slug, private=False)
    assert bob.get_collection(secret.slug).private is False


def test_the_hf_collections_cli(hub: HubProcess, world: People, tmp_path: Path) -> None:
    hf = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hf"
    if not hf.exists():
        pytest.skip("no hf CLI in this venv")
    env = client_env(hub.url, tmp_path / "hf-home", HF_TOKEN=world.wendy)

    def run(*args: str) -> str:
        done = zygote.run([str(hf), "collections", *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    created = run("create", "CLI picks", "--description", "from the terminal")
    shown = re.search(r"slug: (\S+)", created)
    slug = SLUG.fullmatch(shown[1]) if shown else None
    assert slug and slug["owner"] == "wendy", created
    run("add-item", slug[0], "alice/liked", "model", "--note", "via hf")
    info = run("info", slug[0])
    assert "alice/liked" in info and "via hf" in info
    assert slug[0] in run("ls", "--owner", "wendy", "--json")
    run("delete", slug[0])
    with pytest.raises(HfHubHTTPError):
        _api(hub, world.wendy).get_collection(slug[0])


def test_both_client_releases(hub: HubProcess, world: People, client: Client, tmp_path: Path) -> None:
    result = client.run(
        "likes_and_collections",
        endpoint=hub.url,
        work=tmp_path,
        owner=world.alice,
        fan=world.bob,
        repo_id="alice/liked",
    )
    assert "bob" in result["likers"] and "alice/liked" in result["liked"]
    assert result["items"] == [["model", "alice/liked", "old client"]]


def _csrf(html: str, action: str) -> str:
    found = re.search(
        rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf" value="([0-9a-f]{{64}})"', html
    )
    assert found, f"no CSRF field in a form to {action!r}"
    return found.group(1)


def test_the_like_button_and_the_collection_page(hub: HubProcess, world: People) -> None:
    with httpx.Client(base_url=hub.url, timeout=30) as browser:
        page = browser.get("/alice/liked")
        assert "Log in to like" in page.text
        login = browser.get("/login")
        assert (
            browser.post(
                "/login", data={"token": world.bob, "csrf": _csrf(login.text, "/login"), "next": "/"}
            ).status_code
            == 303
        )
        before = _api(hub, None).model_info("alice/liked").likes
        page = browser.get("/alice/liked")
        assert browser.post("/alice/liked/like", data={"action": "like", "csrf": "0" * 64}).status_code == 403
        done = browser.post("/alice/liked/like", data={"action": "like", "csrf": _csrf(page.text, "/alice/liked/like")})
        assert done.status_code == 303 and done.headers["location"] == "/alice/liked"
        page = browser.get("/alice/liked")
        assert 'aria-pressed="true"' in page.text and _api(hub, None).model_info("alice/liked").likes == before + 1
        browser.post("/alice/liked/like", data={"action": "unlike", "csrf": _csrf(page.text, "/alice/liked/like")})
        assert _api(hub, None).model_info("alice/liked").likes == before

    alice = _api(hub, world.alice)
    shown = alice.create_collection("Shown <b>here</b>", description="a page")
    alice.add_collection_item(shown.slug, "alice/liked", "model", note="<script>x</script>")
    alice.add_collection_item(shown.slug, "alice/hidden", "model")
    page = httpx.get(f"{hub.url}/collections/{shown.slug}", timeout=30)
    assert page.status_code == 200 and "Shown &lt;b&gt;here&lt;/b&gt;" in page.text
    assert 'href="/alice/liked"' in page.text and "&lt;script&gt;" in page.text and "alice/hidden" not in page.text
    hidden = alice.create_collection("Not for the web", private=True)
    assert httpx.get(f"{hub.url}/collections/{hidden.slug}", timeout=30).status_code == 404
