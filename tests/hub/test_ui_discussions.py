"""The community tab over HTTP against a real hub process (SQLite and PostgreSQL): the list with its filters, a
thread with Markdown comments through the cards' sanitiser, a pull request's files changed (text and tensor diffs),
the forms of participants and writers (comment, close, reopen, hide, rename, merge) with their CSRF protection, who
sees and does what (anonymous, private, gated), a conflicting merge refused by name, and the ``discussion`` and
``discussion.comment`` webhooks of all of it, written in the change's own transaction."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from safetensors.numpy import save

from tests.hub.test_ui_owner import Visitor
from tests.hub.test_webhooks import LOCAL, Received, Receiver
from tests.hubtools import HubProcess, Postgres, start_hub


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def community_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub whose webhooks may reach a receiver on 127.0.0.1."""
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(tmp_path_factory.mktemp("hub") / "data", url, env=LOCAL)
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def weights(scale: float) -> bytes:
    return save({"w": np.arange(12, dtype=np.float32).reshape(3, 4) * scale, "b": np.zeros(4, dtype=np.float32)})


def _names(hub: HubProcess) -> tuple[str, str, str, str]:
    """A fresh owner and contributor: their names and tokens."""
    suffix = uuid.uuid4().hex[:6]
    owner, other = f"olive{suffix}", f"paul{suffix}"
    return owner, hub.create_user(owner), other, hub.create_user(other)


def _model(api: HfApi, repo_id: str) -> None:
    api.create_repo(repo_id)
    api.create_commit(repo_id, [CommitOperationAdd("README.md", b"# Tiny\n\nline one\nline two\n"),
                                CommitOperationAdd("model.safetensors", weights(1.0))],
                      commit_message="first")  # fmt: skip


def _open_pr(api: HfApi, repo_id: str) -> int:
    done = api.create_commit(repo_id, [CommitOperationAdd("README.md", b"# Tiny\n\nline one\nline 2 <b>\n"),
                                       CommitOperationAdd("model.safetensors", weights(3.0))],
                             commit_message="Better weights", commit_description="Retrained **longer**.",
                             create_pr=True)  # fmt: skip
    assert done.pr_num is not None
    return done.pr_num


def _forms(html: str) -> list[str]:
    """The ``action`` values of the forms a thread page shows below its head."""
    main = html.split('class="thread-head"', 1)[1]
    return re.findall(r'name="action" value="([a-z]+)"', main)


def test_a_pull_requests_life_in_the_web_pages(community_hub: HubProcess, receiver: Receiver) -> None:
    hub = community_hub
    owner, owner_token, _, other_token = _names(hub)
    repo_id, repo = f"{owner}/tiny", f"/{owner}/tiny"
    owner_api, other_api = HfApi(endpoint=hub.url, token=owner_token), HfApi(endpoint=hub.url, token=other_token)
    _model(owner_api, repo_id)
    owner_api.create_webhook(url=receiver.url(), watched=[{"type": "model", "name": repo_id}],
                             domains=["discussion", "repo"])  # fmt: skip
    num = _open_pr(other_api, repo_id)  # a non-writer, with the stock client

    # the list: the tab, its filters; anonymous readers see it, with no form
    anonymous = httpx.get(f"{hub.url}{repo}/discussions").text
    assert f'href="{repo}/discussions"' in anonymous and "Better weights" in anonymous
    assert "Log in</a> to start a discussion" in anonymous and 'name="csrf"' not in anonymous.split("community-head")[1]
    assert "Better weights" in httpx.get(f"{hub.url}{repo}/discussions?type=pull_request").text
    assert "Better weights" not in httpx.get(f"{hub.url}{repo}/discussions?type=discussion").text
    assert "Better weights" not in httpx.get(f"{hub.url}{repo}/discussions?status=closed").text
    assert httpx.get(f"{hub.url}{repo}/discussions?status=nope").status_code == 400

    # the contributor comments and opens a discussion from the pages
    paul = Visitor(hub.url)
    paul.login(other_token)
    thread = f"{repo}/discussions/{num}"
    page = paul.get(thread).text
    assert "Retrained <strong>longer</strong>." in page and "added a commit" in page
    assert _forms(page) == ["comment", "close", "rename"]  # his own pull request: no merge, no hide
    r = paul.post(thread, thread, {"action": "comment", "comment": "Tested on **wikitext** <script>x()</script>"})
    assert r.status_code == 200 and "<strong>wikitext</strong>" in r.text and "<script>x()" not in r.text
    assert r.url.fragment and f'id="{r.url.fragment}"' in r.text
    r = paul.post(f"{repo}/discussions", f"{repo}/discussions", {"title": "A question", "description": "Which *data*?"})
    assert r.status_code == 200 and r.url.path == f"{repo}/discussions/{num + 1}" and "<em>data</em>" in r.text
    assert paul.http.post(thread, data={"action": "comment", "comment": "no token"}).status_code == 403

    # files changed: the text diff and the tensor diff since the pull request opened
    files = paul.get(f"{thread}/files").text
    assert '<span class="l del">-line two</span>' in files and '<span class="l add">+line 2 &lt;b&gt;</span>' in files
    row = re.search(r'<tr class="t-changed">(.*?)</tr>', files, re.S)
    assert row is not None and ">w<" in row.group(1) and "F32 [3, 4]" in row.group(1) and ">22<" in row.group(1)
    assert "1 unchanged" in files
    assert paul.get(f"{repo}/discussions/{num + 1}/files").status_code == 404  # a discussion changes no files

    # the owner hides a comment, renames, closes and reopens the discussion, merges the pull request
    olive = Visitor(hub.url)
    olive.login(owner_token)
    page = olive.get(thread).text
    assert _forms(page) == ["hide", "hide", "merge", "comment", "close", "rename"]
    comment_id = re.findall(r'name="comment_id" value="([0-9a-f]+)"', page)[-1]
    r = olive.post(thread, thread, {"action": "hide", "comment_id": comment_id})
    assert "This comment has been hidden." in r.text and "wikitext" not in r.text
    question = f"{repo}/discussions/{num + 1}"
    r = olive.post(question, question, {"action": "rename", "title": "Which data?"})
    assert "changed the title from <del>A question</del> to <strong>Which data?</strong>" in r.text
    r = olive.post(question, question, {"action": "close", "comment": "Answered in the card."})
    assert "closed this" in r.text and "Answered in the card." in r.text and 'value="reopen"' in r.text
    r = olive.post(question, question, {"action": "reopen"})
    assert "reopened this" in r.text
    r = olive.post(thread, thread, {"action": "merge"})
    assert r.status_code == 200 and "merged this pull request" in r.text and "merged as" in r.text
    readme = httpx.get(f"{hub.url}/{repo_id}/resolve/main/README.md").text
    assert readme.endswith("line 2 <b>\n")
    assert httpx.get(f"{hub.url}/{repo_id}/resolve/main/model.safetensors").content == weights(3.0)
    assert "merge" not in _forms(olive.get(thread).text)

    # webhooks: the pull request's creation (by create_pr), the comments, the status changes, the merge
    def of(scope: str, action: str) -> list[Received]:
        return receiver.matching(lambda r: (r.body["event"]["scope"], r.body["event"]["action"]) == (scope, action))

    receiver.wait_for(lambda r: r.body.get("discussion", {}).get("status") == "merged")
    receiver.wait_for(lambda r: r.body["event"]["scope"] == "repo.content")
    created = of("discussion", "create")
    assert [(c.body["discussion"]["num"], c.body["discussion"]["isPullRequest"]) for c in created] == [
        (num, True),
        (num + 1, False),
    ]
    assert created[0].body["discussion"]["status"] == "open"  # announced with its commit
    comments = of("discussion.comment", "create")
    assert "Tested on **wikitext**" in comments[0].body["comment"]["content"]
    assert any(c.body["comment"]["hidden"] for c in of("discussion.comment", "update"))
    content = receiver.matching(lambda r: r.body["event"]["scope"] == "repo.content")
    heads = [c.body["repo"]["headSha"] for c in content]
    assert owner_api.model_info(repo_id).sha in heads


def test_who_sees_and_does_what_in_the_pages(community_hub: HubProcess) -> None:
    hub = community_hub
    owner, owner_token, _, other_token = _names(hub)
    owner_api = HfApi(endpoint=hub.url, token=owner_token)
    paul = Visitor(hub.url)
    paul.login(other_token)

    # private: invisible, as the API
    owner_api.create_repo(f"{owner}/secret", private=True)
    owner_api.create_discussion(f"{owner}/secret", "hidden talk")
    for path in (f"/{owner}/secret/discussions", f"/{owner}/secret/discussions/1"):
        assert paul.get(path).status_code == 404 and "hidden talk" not in paul.get(path).text
    assert paul.http.post(f"/{owner}/secret/discussions/1", data={"action": "comment"}).status_code in (403, 404)

    # gated: readable, but taking part needs access
    owner_api.create_repo(f"{owner}/gated")
    owner_api.update_repo_settings(f"{owner}/gated", gated="manual")
    owner_api.create_discussion(f"{owner}/gated", "Gate question")
    page = paul.get(f"/{owner}/gated/discussions/1").text
    assert "Gate question" in page and "This repository is gated" in page and _forms(page) == []

    # a writer's own repo; a stranger cannot merge even by posting the form
    owner_api.create_repo(f"{owner}/open")
    owner_api.create_commit(f"{owner}/open", [CommitOperationAdd("a.txt", b"one\n")], commit_message="a")
    other_api = HfApi(endpoint=hub.url, token=other_token)
    pr = other_api.create_commit(f"{owner}/open", [CommitOperationAdd("a.txt", b"two\n")], commit_message="b",
                                 create_pr=True).pr_num  # fmt: skip
    thread = f"/{owner}/open/discussions/{pr}"
    r = paul.post(thread, thread, {"action": "merge"})
    assert r.status_code == 403 and "only a writer" in r.text
    csrf = paul.csrf(thread, thread)  # a valid token, posted where the viewer may not take part
    r = paul.http.post(f"/{owner}/gated/discussions/1", data={"csrf": csrf, "action": "comment", "comment": "hi"})
    assert r.status_code == 403 and "gated" in r.text

    # a conflicting merge is refused by name, on a page
    owner_api.create_commit(f"{owner}/open", [CommitOperationAdd("a.txt", b"three\n")], commit_message="c")
    olive = Visitor(hub.url)
    olive.login(owner_token)
    r = olive.post(thread, thread, {"action": "merge"})
    assert r.status_code == 409 and "conflicts with" in r.text and "a.txt" in r.text
    assert r.headers["content-type"].startswith("text/html")
