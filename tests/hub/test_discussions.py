"""Discussions and pull requests through the stock client against a live hub (SQLite and PostgreSQL): every call
of ``HfApi`` from ``get_repo_discussions`` to ``merge_pull_request``, a pull request's life (opened by
``create_commit(create_pr=True)``, downloaded from ``refs/pr/N``, committed to, merged), a merge commit when the
target moved without conflict, a conflicting merge refused by name, who may do what, and ``transformers``'
``push_to_hub(create_pr=True)``."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.community import DiscussionComment, DiscussionCommit, DiscussionStatusChange
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hub.conftest import Client, People, client_env, run_checked
from tests.hubtools import HubProcess


def _api(hub: HubProcess, token: str | None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or False)


def _add(path: str, text: str) -> CommitOperationAdd:
    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=text.encode())


def _status(err: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert err.value.response is not None
    return err.value.response.status_code


def test_discussion_calls(hub: HubProcess, people: People, unique: str) -> None:
    alice, bob = _api(hub, people.alice), _api(hub, people.bob)
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    first = bob.create_discussion(repo, "Which tokenizer?", description="Is it **BPE**?")
    assert (first.num, first.author, first.status, first.is_pull_request) == (1, "bob", "open", False)
    assert isinstance(first.events[0], DiscussionComment) and first.events[0].content == "Is it **BPE**?"
    assert "<strong>BPE</strong>" in first.events[0]._event["data"]["latest"]["html"]
    script = bob.comment_discussion(repo, 1, "<script>alert(1)</script> hi")
    assert "<script" not in script._event["data"]["latest"]["html"]
    pr = alice.create_pull_request(repo, "Add weights")
    assert (pr.num, pr.status, pr.is_pull_request, pr.target_branch) == (2, "draft", True, "refs/heads/main")

    reply = alice.comment_discussion(repo, 1, "Yes, BPE.")
    assert (reply.author, reply.content, reply.edited, reply.hidden) == ("alice", "Yes, BPE.", False, False)
    edited = alice.edit_discussion_comment(repo, 1, reply.id, "Yes: byte-level BPE.")
    assert (edited.content, edited.edited) == ("Yes: byte-level BPE.", True)
    with pytest.raises(HfHubHTTPError) as err:
        bob.edit_discussion_comment(repo, 1, reply.id, "no")  # not bob's comment
    assert _status(err) == 403
    spam = bob.comment_discussion(repo, 1, "buy now")
    with pytest.raises(HfHubHTTPError) as err:
        bob.hide_discussion_comment(repo, 1, spam.id)  # hiding is for the repo's writers
    assert _status(err) == 403
    hidden = alice.hide_discussion_comment(repo, 1, spam.id)
    assert hidden.hidden and "buy now" not in hidden.content
    renamed = bob.rename_discussion(repo, 1, "Which tokenizer is it?")  # bob's own discussion
    assert (renamed.old_title, renamed.new_title) == ("Which tokenizer?", "Which tokenizer is it?")
    closed = bob.change_discussion_status(repo, 1, "closed", comment="Answered, thanks")
    assert isinstance(closed, DiscussionStatusChange) and closed.new_status == "closed"
    with pytest.raises(HfHubHTTPError) as err:
        bob.change_discussion_status(repo, 2, "closed")  # alice's pull request
    assert _status(err) == 403

    details = bob.get_discussion_details(repo, 1)
    assert details.title == "Which tokenizer is it?" and details.status == "closed"
    assert [e.type for e in details.events] == [
        "comment",
        "comment",
        "comment",
        "comment",
        "title-change",
        "comment",
        "status-change",
    ]
    assert {d.num for d in bob.get_repo_discussions(repo)} == {1, 2}
    assert [d.num for d in bob.get_repo_discussions(repo, discussion_type="pull_request")] == [2]
    assert [d.num for d in bob.get_repo_discussions(repo, discussion_status="closed")] == [1]
    assert [d.num for d in bob.get_repo_discussions(repo, author="bob")] == [1]
    for n in range(3, 56):  # a second page
        alice.create_discussion(repo, f"topic {n}")
    assert [d.num for d in _api(hub, None).get_repo_discussions(repo)] == list(range(55, 0, -1))


def test_pull_request_life(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    alice, bob = _api(hub, people.alice), _api(hub, people.bob)
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    alice.create_commit(repo, [_add("README.md", "v1\n"), _add("config.json", "{}")], commit_message="start")

    opened = bob.create_commit(
        repo,
        [_add("README.md", "v2\n")],
        commit_message="Better card",
        commit_description="Fixes the card",
        create_pr=True,
    )
    assert opened.pr_url == f"{hub.url}/alice/{unique}/discussions/1" and opened.pr_revision == "refs/pr/1"
    assert alice.list_repo_files(repo) == [".gitattributes", "README.md", "config.json"]
    main_readme = hf_hub_download(repo, "README.md", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert Path(main_readme).read_text() == "v1\n"  # main has not moved
    pr_readme = hf_hub_download(repo, "README.md", revision="refs/pr/1", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(pr_readme).read_text() == "v2\n"

    refs = _api(hub, None).list_repo_refs(repo, include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", opened.oid)] and not refs.tags
    second = bob.create_commit(repo, [_add("extra.txt", "more")], commit_message="Add extra", revision="refs/pr/1")
    with pytest.raises(HfHubHTTPError) as err:
        _api(hub, people.wendy).create_commit(repo, [_add("x", "y")], commit_message="x", revision="refs/pr/1")
    assert _status(err) == 403  # neither its author nor a writer of alice's repo
    details = alice.get_discussion_details(repo, 1)
    assert details.status == "open" and details.title == "Better card"
    commits = [e for e in details.events if isinstance(e, DiscussionCommit)]
    assert [(c.summary, c.oid) for c in commits] == [("Better card", opened.oid), ("Add extra", second.oid)]

    with pytest.raises(HfHubHTTPError) as err:
        bob.merge_pull_request(repo, 1)  # only writers merge
    assert _status(err) == 403
    alice.merge_pull_request(repo, 1, comment="Thanks!")
    assert alice.get_discussion_details(repo, 1).status == "merged"
    assert alice.get_discussion_details(repo, 1).merge_commit_oid == second.oid  # a fast-forward
    files = alice.list_repo_files(repo)
    assert "extra.txt" in files
    copy = alice.duplicate_repo(repo, to_id=f"{repo}-copy")  # pull requests stay behind: numbers start afresh
    assert not alice.list_repo_refs(copy.repo_id, include_pull_requests=True).pull_requests
    assert alice.create_pull_request(copy.repo_id, "first of the copy").num == 1
    readme = hf_hub_download(repo, "README.md", endpoint=hub.url, cache_dir=tmp_path / "after")
    assert Path(readme).read_text() == "v2\n"


def test_merge_after_target_moved_and_conflict(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    alice, bob = _api(hub, people.alice), _api(hub, people.bob)
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    alice.create_commit(repo, [_add("a.txt", "a"), _add("b.txt", "b"), _add("c.txt", "c")], commit_message="start")
    clean = bob.create_commit(
        repo, [_add("a.txt", "a2"), CommitOperationDelete("c.txt")], commit_message="a2", create_pr=True
    )
    clash = bob.create_commit(repo, [_add("b.txt", "bob's b")], commit_message="b", create_pr=True)
    alice.create_commit(repo, [_add("b.txt", "alice's b"), _add("d.txt", "d")], commit_message="moved on")

    with pytest.raises(HfHubHTTPError) as err:
        alice.merge_pull_request(repo, clash.pr_num)
    assert _status(err) == 409 and "b.txt" in str(err.value)
    alice.merge_pull_request(repo, clean.pr_num)  # a merge commit: no path changed on both sides
    merged = alice.get_discussion_details(repo, clean.pr_num)
    assert merged.status == "merged" and merged.merge_commit_oid not in (None, clean.oid)
    assert sorted(alice.list_repo_files(repo)) == [".gitattributes", "a.txt", "b.txt", "d.txt"]
    got = {f: Path(alice.hf_hub_download(repo, f, cache_dir=tmp_path)).read_text() for f in ("a.txt", "b.txt")}
    assert got == {"a.txt": "a2", "b.txt": "alice's b"}
    assert alice.get_discussion_details(repo, clash.pr_num).status == "open"


def test_who_sees_and_does_what(hub: HubProcess, people: People, unique: str) -> None:
    alice, bob = _api(hub, people.alice), _api(hub, people.bob)
    secret = f"alice/{unique}-private"
    alice.create_repo(secret, private=True)
    alice.create_discussion(secret, "internal")
    for call in (
        lambda: list(bob.get_repo_discussions(secret)),
        lambda: bob.get_discussion_details(secret, 1),
        lambda: bob.create_discussion(secret, "let me in"),
        lambda: bob.comment_discussion(secret, 1, "hi"),
        lambda: bob.create_commit(secret, [_add("x", "y")], commit_message="x", create_pr=True),
    ):
        with pytest.raises(RepositoryNotFoundError):
            call()
    public = f"alice/{unique}"
    alice.create_repo(public)
    with pytest.raises(HfHubHTTPError) as err:
        _api(hub, None).create_discussion(public, "anonymous")
    assert _status(err) == 401
    with pytest.raises(HfHubHTTPError) as err:
        _api(hub, people.alice_read).create_discussion(public, "read token")
    assert _status(err) == 403
    with pytest.raises(HfHubHTTPError) as err:
        bob.create_commit(public, [_add("x", "y")], commit_message="direct")  # a PR is fine, a direct commit not
    assert _status(err) == 403

    gated = f"alice/{unique}-gated"
    alice.create_repo(gated)
    alice.update_repo_settings(gated, gated="auto")
    with pytest.raises(HfHubHTTPError) as err:
        bob.create_discussion(gated, "may I?")  # gated: access first
    assert _status(err) == 403
    asked = httpx.post(
        f"{hub.url}/api/models/{gated}/user-access-request/request",
        json={"fields": {}},
        headers={"authorization": f"Bearer {people.bob}"},
    )
    assert asked.status_code == 200 and asked.json()["status"] == "accepted"
    assert bob.create_discussion(gated, "thanks for the access").num == 1


PUSH = """
import sys, transformers
config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32, n_positions=16)
url = transformers.GPT2LMHeadModel(config).push_to_hub(sys.argv[1], token=sys.argv[2], create_pr=True,
                                                        commit_message="Add a tiny GPT-2")
print(getattr(url, "pr_url", url))
"""


def test_transformers_push_to_hub_create_pr(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    alice, bob = _api(hub, people.alice), _api(hub, people.bob)
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    out = run_checked([sys.executable, "-c", PUSH, repo, people.bob], env=client_env(hub.url, tmp_path / "home"))
    assert out.strip().splitlines()[-1] == f"{hub.url}/alice/{unique}/discussions/1"
    assert "model.safetensors" not in alice.list_repo_files(repo)
    alice.merge_pull_request(repo, 1)
    assert {"config.json", "model.safetensors"} <= set(alice.list_repo_files(repo))
    assert bob.get_discussion_details(repo, 1).status == "merged"


def test_hf_upload_create_pr_and_license_policy_on_merge(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    alice = _api(hub, people.alice)
    repo = f"{people.org}/{unique}"
    alice.create_repo(repo)
    alice.create_commit(repo, [_add("README.md", "---\nlicense: mit\n---\n# m\n")], commit_message="card")
    card = tmp_path / "README.md"
    card.write_text("---\nlicense: apache-2.0\n---\n# m\n")
    hf = Path(sys.executable).with_name("hf")
    out = run_checked(
        [str(hf), "upload", repo, str(card), "README.md", "--create-pr", "--token", people.bob],
        env=client_env(hub.url, tmp_path / "home"),
    )
    assert "Uploaded" in out
    pr = alice.get_discussion_details(repo, 1)
    assert (pr.is_pull_request, pr.author, pr.status) == (True, "bob", "open")
    policy, auth = f"{hub.url}/api/organizations/{people.org}/policy", {"authorization": f"Bearer {people.alice}"}
    assert httpx.put(policy, json={"allowed_licenses": ["mit"]}, headers=auth).status_code == 200
    try:
        with pytest.raises(HfHubHTTPError) as err:
            alice.merge_pull_request(repo, 1)
        assert _status(err) == 403 and "license policy" in str(err.value)
        assert alice.get_discussion_details(repo, 1).status == "open"
    finally:
        httpx.put(policy, json={}, headers=auth)
    alice.merge_pull_request(repo, 1)
    assert "apache-2.0" in Path(alice.hf_hub_download(repo, "README.md", cache_dir=tmp_path / "c")).read_text()


OLD_CLIENT_PR = """
import sys
from huggingface_hub import CommitOperationAdd, HfApi
endpoint, repo, author, owner = sys.argv[1:5]
bob, alice = HfApi(endpoint=endpoint, token=author), HfApi(endpoint=endpoint, token=owner)
add = [CommitOperationAdd("w.safetensors", b"\\0" * 2048), CommitOperationAdd("notes.md", b"hello")]
info = bob.create_commit(repo, add, commit_message="Weights", create_pr=True)
bob.comment_discussion(repo, info.pr_num, "please merge")
alice.merge_pull_request(repo, info.pr_num)
details = alice.get_discussion_details(repo, info.pr_num)
print(info.pr_revision, details.status, [e.type for e in details.events], sorted(alice.list_repo_files(repo)))
"""


def test_older_client_opens_and_merges_a_pull_request(
    hub: HubProcess, people: People, unique: str, old_client: Client, tmp_path: Path
) -> None:
    """The older release line (its own venv): a pull request with an LFS file by a non-writer, merged."""
    repo = f"alice/{unique}"
    _api(hub, people.alice).create_repo(repo)
    assert old_client.python is not None
    out = run_checked(
        [str(old_client.python), "-c", OLD_CLIENT_PR, hub.url, repo, people.bob, people.alice],
        env=client_env(hub.url, tmp_path / "home"),
    )
    assert out.strip().splitlines()[-1] == (
        "refs/pr/1 merged ['commit', 'comment', 'status-change'] ['.gitattributes', 'notes.md', 'w.safetensors']"
    )


def test_discussion_webhooks(tmp_path: Path) -> None:
    """Webhooks of the ``discussion`` domain hear of discussions and their comments, in the Hub's payload."""
    from tests.hub.test_webhooks import LOCAL, Receiver
    from tests.hubtools import start_hub

    hub = start_hub(tmp_path / "data", env=LOCAL)
    receiver = Receiver()
    try:
        alice, bob = _api(hub, hub.create_user("alice")), _api(hub, hub.create_user("bob"))
        alice.create_repo("alice/m")
        watched = [{"type": "model", "name": "alice/m"}]
        alice.create_webhook(url=receiver.url(), watched=watched, domains=["discussion"])
        alice.create_webhook(url=receiver.url("/repo"), watched=watched, domains=["repo"])
        bob.create_discussion("alice/m", "A question")
        bob.comment_discussion("alice/m", 1, "details")
        alice.change_discussion_status("alice/m", 1, "closed")
        got = receiver.wait_for(lambda r: r.path == "/hook", count=3)
        kinds = [(r.body["event"]["action"], r.body["event"]["scope"]) for r in got]
        assert kinds[:2] == [("create", "discussion"), ("create", "discussion.comment")]
        assert ("update", "discussion") in kinds[2:]
        comment = next(r.body for r in got if r.body["event"]["scope"] == "discussion.comment")
        assert comment["comment"]["content"] == "details" and comment["discussion"]["num"] == 1
        assert comment["discussion"]["url"]["web"] == f"{hub.url}/alice/m/discussions/1"
        assert comment["repo"]["name"] == "alice/m"
        assert not receiver.matching(lambda r: r.path == "/repo")  # the repo domain hears none of these
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        hub.stop()
