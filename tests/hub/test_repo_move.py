"""``HfApi.move_repo``: renames and transfers keep the repo whole (files, history, refs, settings), its old name
redirects reads (307, as on the Hub) until a repo takes the name, and only admins of the repo with a write token who
may create repos in the destination namespace may move it."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hub.conftest import People
from tests.hubtools import HubProcess


def _api(hub: HubProcess, token: str) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _move(hub: HubProcess, token: str | None, body: dict[str, str]) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{hub.url}/api/repos/move", json=body, headers=headers, timeout=30)


def _status(error: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert error.value.response is not None
    return error.value.response.status_code


def _snapshot(api: HfApi, repo: str, repo_type: str = "model") -> dict[str, object]:
    info = api.repo_info(repo, repo_type=repo_type, files_metadata=True)
    refs = api.list_repo_refs(repo, repo_type=repo_type)
    return {
        "sha": info.sha,
        "private": info.private,
        "gated": info.gated,
        "files": sorted((f.rfilename, f.blob_id, f.size) for f in info.siblings or []),
        "branches": sorted((b.name, b.target_commit) for b in refs.branches),
        "tags": sorted((t.name, t.target_commit) for t in refs.tags),
        "commits": [c.commit_id for c in api.list_repo_commits(repo, repo_type=repo_type)],
    }


def test_rename_keeps_everything_and_the_old_name_redirects(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    api = _api(hub, people.alice)
    old, new = f"alice/{unique}", f"alice/{unique}-renamed"
    weights = os.urandom(3000)
    api.create_repo(old, private=True)
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id=old)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.bin", repo_id=old)  # LFS
    api.create_branch(old, branch="dev")
    api.create_tag(old, tag="v1", tag_message="first")
    api.update_repo_settings(old, gated="auto")
    before = _snapshot(api, old)

    api.move_repo(old, new)

    assert _snapshot(api, new) == before
    assert before["private"] is True and before["gated"] == "auto"
    for name, data in (("config.json", b'{"a": 1}'), ("model.bin", weights)):
        got = hf_hub_download(new, name, endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "new")
        assert Path(got).read_bytes() == data
    # reads of the old name reach the repo by a relative 307, which the stock client follows
    assert api.model_info(old).id == new
    got = hf_hub_download(old, "model.bin", endpoint=hub.url, token=people.alice, cache_dir=tmp_path / "old")
    assert Path(got).read_bytes() == weights
    auth = {"authorization": f"Bearer {people.alice}"}
    for path, moved in ((f"/api/models/{old}?blobs=1", f"/api/models/{new}?blobs=1"),
                        (f"/{old}/resolve/v1/config.json", f"/{new}/resolve/v1/config.json"),
                        (f"/api/models/{old}/tree/main", f"/api/models/{new}/tree/main"),
                        (f"/{old}", f"/{new}")):  # fmt: skip
        r = httpx.get(hub.url + path, headers=auth)
        assert (r.status_code, r.headers.get("location")) == (307, moved), path
    # writes to the old name do not follow it; callers who cannot see the repo learn nothing
    with pytest.raises(RepositoryNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=old)
    with pytest.raises(RepositoryNotFoundError):
        _api(hub, people.bob).model_info(old)
    r = httpx.get(f"{hub.url}/{old}/resolve/main/config.json")
    assert r.status_code == 404 and "location" not in r.headers and new not in r.text


def test_transfer_to_an_org(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    alice, wendy = _api(hub, people.alice), _api(hub, people.wendy)
    old, new = f"alice/{unique}", f"lab/{unique}"
    alice.create_repo(old)
    alice.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id=old)
    before = _snapshot(alice, old)
    with pytest.raises(HfHubHTTPError) as e:
        wendy.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=old)
    assert _status(e) == 403

    alice.move_repo(old, new)

    assert _snapshot(alice, new) == before
    assert [m.id for m in alice.list_models(author="lab", search=unique)] == [new]
    assert [m.id for m in alice.list_models(author="alice", search=unique)] == []
    wendy.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=new)  # lab's writers now may write
    got = hf_hub_download(old, "w.bin", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(got).read_bytes() == b"weights"
    # a writer of the org moves her own repo into it; a writer (not admin) of the org cannot move the org's repos
    wendy.create_repo(f"wendy/{unique}")
    wendy.move_repo(f"wendy/{unique}", f"lab/{unique}-w")
    assert wendy.model_info(f"lab/{unique}-w").id == f"lab/{unique}-w"
    with pytest.raises(HfHubHTTPError) as e:
        wendy.move_repo(new, f"lab/{unique}-x")
    assert _status(e) == 403


def test_datasets_move_and_redirect(hub: HubProcess, people: People, unique: str, tmp_path: Path) -> None:
    api = _api(hub, people.alice)
    old, new = f"alice/{unique}", f"lab/{unique}-data"
    api.create_repo(old, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"a,b\n", path_in_repo="d.csv", repo_id=old, repo_type="dataset")
    api.move_repo(old, new, repo_type="dataset")
    assert api.dataset_info(old).id == new
    got = hf_hub_download(old, "d.csv", repo_type="dataset", endpoint=hub.url, cache_dir=tmp_path)
    assert Path(got).read_bytes() == b"a,b\n"
    r = httpx.head(f"{hub.url}/datasets/{old}/resolve/main/d.csv")
    assert (r.status_code, r.headers["location"]) == (307, f"/datasets/{new}/resolve/main/d.csv")
    assert not api.repo_exists(old)  # a model of that name never existed
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(new)


def test_a_new_repo_takes_the_old_name_and_moves_chain(
    hub: HubProcess, people: People, unique: str, tmp_path: Path
) -> None:
    api = _api(hub, people.alice)
    a, b, c = (f"alice/{unique}-{x}" for x in "abc")
    api.create_repo(a)
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=a)
    api.move_repo(a, b)
    api.move_repo(b, c)
    assert api.model_info(a).id == api.model_info(b).id == c  # both old names reach the repo
    api.move_repo(c, a)  # back to its first name: the redirect there gives way
    assert api.model_info(a).id == api.model_info(c).id == a
    api.create_repo(b)  # a new repo under an old name wins over the redirect
    assert api.model_info(b).id == b
    assert api.list_repo_files(b) == [".gitattributes"]
    api.delete_repo(b)
    with pytest.raises(RepositoryNotFoundError):  # and the redirect it replaced is gone
        api.model_info(b)
    assert "one.txt" in api.list_repo_files(a)


def test_lineage_written_with_the_old_name_still_resolves(hub: HubProcess, people: People, unique: str) -> None:
    api = _api(hub, people.alice)
    base, child = f"alice/{unique}-base", f"alice/{unique}-ft"
    api.create_repo(base)
    api.upload_file(path_or_fileobj=b"---\nlicense: apache-2.0\n---\n", path_in_repo="README.md", repo_id=base)
    api.create_repo(child)
    api.upload_file(path_or_fileobj=f"---\nlicense: apache-2.0\nbase_model: {base}\n---\n".encode(),
                    path_in_repo="README.md", repo_id=child)  # fmt: skip
    api.move_repo(base, f"lab/{unique}-base")
    tree = httpx.get(f"{hub.url}/api/models/{child}/lineage").json()
    assert [(x["id"], x["license"], x["local"]) for x in tree["ancestors"]] == [(base, "apache-2.0", True)]
    down = httpx.get(f"{hub.url}/api/models/lab/{unique}-base/lineage").json()["descendants"]
    assert [d["id"] for d in down] == [child]


def test_existing_destination_is_a_conflict(hub: HubProcess, people: People, unique: str) -> None:
    api = _api(hub, people.alice)
    api.create_repo(f"alice/{unique}")
    api.create_repo(f"alice/{unique}-taken")
    api.create_repo(f"lab/{unique}-secret", private=True)
    for to in (f"alice/{unique}-taken", f"lab/{unique}-secret"):
        with pytest.raises(HfHubHTTPError) as e:
            api.move_repo(f"alice/{unique}", to)
        assert _status(e) == 409 and "already exists" in str(e.value)
    assert api.model_info(f"alice/{unique}").id == f"alice/{unique}"


def test_who_may_move(hub: HubProcess, people: People, unique: str) -> None:
    alice = _api(hub, people.alice)
    public, private = f"alice/{unique}-pub", f"alice/{unique}-priv"
    alice.create_repo(public)
    alice.create_repo(private, private=True)
    alice.create_repo(f"lab/{unique}-secret", private=True)
    cases = [
        (people.alice_read, public, f"alice/{unique}-x", 403),  # read-only token
        (people.bob, public, f"bob/{unique}-x", 403),  # sees it, is no admin of it
        (people.bob, private, f"bob/{unique}-x", 404),  # cannot see it: as if it did not exist
        (people.bob, f"alice/{unique}-none", f"bob/{unique}-x", 404),
        (people.alice, public, f"bob/{unique}-x", 403),  # not her namespace
        (people.alice, public, f"nobody{unique}/x", 403),  # no such namespace
        (people.olga, f"lab/{unique}-secret", f"lab/{unique}-y", 403),  # a reader of the org
        (people.bob, f"lab/{unique}-secret", f"bob/{unique}-y", 404),
    ]
    for token, src, dst, status in cases:
        with pytest.raises(HfHubHTTPError) as e:
            _api(hub, token).move_repo(src, dst)
        assert _status(e) == status, (src, dst)
    with pytest.raises(RepositoryNotFoundError):
        _api(hub, people.bob).move_repo(private, f"bob/{unique}-x")
    assert _move(hub, None, {"fromRepo": public, "toRepo": f"alice/{unique}-x"}).status_code == 401
    # the hub admin may move anyone's repo
    _api(hub, people.admin).move_repo(private, f"lab/{unique}-priv")
    assert alice.model_info(f"lab/{unique}-priv").private is True


@pytest.mark.parametrize(
    "to", ["alice/bad--name", "alice/-x", "alice/x.git", "alice", "alice/a/b", "datasets/alice/x", "spaces/alice/x"]
)
def test_invalid_destination_is_a_bad_request(hub: HubProcess, people: People, unique: str, to: str) -> None:
    repo = f"alice/{unique}"
    _api(hub, people.alice).create_repo(repo)
    r = _move(hub, people.alice, {"fromRepo": repo, "toRepo": to, "type": "model"})
    assert (r.status_code, r.headers["x-error-code"]) == (400, "BadRequest"), r.text
    assert _move(hub, people.alice, {"fromRepo": repo, "toRepo": f"models/alice/{unique}-m"}).status_code == 200
    r = _move(hub, people.alice, {"fromRepo": repo, "toRepo": f"alice/{unique}-x", "type": "bucket"})
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")  # a move of buckets: there is none
