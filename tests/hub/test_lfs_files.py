"""``HfApi.list_lfs_files`` and ``HfApi.permanently_delete_lfs_files`` on real hub processes (SQLite and PostgreSQL):
the LFS files of a repo's whole history, and their removal by rewriting it (new commit ids, same titles, the other
files untouched), the old commits going at garbage collection and the bytes with them only when no other repo holds
them; writers only, and a batch with an unknown sha256 changes nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from openckpt.hub.services.storage.gc import GcReport, collect
from tests.hub.conftest import People
from tests.hub.storagetools import age_everything, database, store_of
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes

GRACE = timedelta(hours=1)
AGED = timedelta(hours=2)
CONFIG = b'{"hidden_size": 8}\n'
NOTES = b"notes of the dev branch\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gc(hub: HubProcess) -> GcReport:
    with database(hub) as db:
        return collect(db, store_of(hub), multipart_dir=hub.data_dir / "multipart", grace=GRACE)


def _status(error: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert error.value.response is not None
    return error.value.response.status_code


def _read(hub: HubProcess, repo: str, path: str, revision: str, cache: Path) -> bytes:
    local = hf_hub_download(repo, path, revision=revision, endpoint=hub.url, token=hub.token, cache_dir=cache)
    return Path(local).read_bytes()


def _batch(hub: HubProcess, repo: str, token: str, shas: list[str], rewrite: bool = True) -> httpx.Response:
    return httpx.post(f"{hub.url}/api/models/{repo}/lfs-files/batch", headers={"authorization": f"Bearer {token}"},
                      json={"deletions": {"sha": shas, "rewriteHistory": rewrite}}, timeout=60)  # fmt: skip


def _history(hf: HfApi, repo: str) -> dict[str, list[tuple[str, str]]]:
    """(id, title) of the commits of main, the tag v1 and the branch dev, newest first."""
    return {rev: [(c.commit_id, c.title) for c in hf.list_repo_commits(repo, revision=rev)] for rev in REVS}


REVS = ("main", "v1", "dev")


def test_list_and_purge_rewrite_history_and_gc_spares_shared_bytes(
    hub: HubProcess, unique: str, tmp_path: Path
) -> None:
    hf = HfApi(endpoint=hub.url, token=hub.token)
    repo, other = f"admin/{unique}", f"admin/{unique}-other"
    leak, keep = opaque_bytes(150_000), opaque_bytes(160_000)  # .bin: LFS whatever their size
    hf.create_repo(repo)
    hf.create_repo(other)
    hf.upload_file(path_or_fileobj=leak, path_in_repo="weights/leak.bin", repo_id=repo, commit_message="add leak")
    hf.upload_file(path_or_fileobj=CONFIG, path_in_repo="config.json", repo_id=repo, commit_message="add config")
    hf.create_tag(repo, tag="v1")
    hf.upload_file(path_or_fileobj=keep, path_in_repo="keep.bin", repo_id=repo, commit_message="add keep")
    hf.create_branch(repo, branch="dev")
    hf.upload_file(path_or_fileobj=NOTES, path_in_repo="notes.txt", repo_id=repo, revision="dev",
                   commit_message="dev notes")  # fmt: skip
    hf.upload_file(path_or_fileobj=leak, path_in_repo="copy.bin", repo_id=other)  # the same bytes in another repo

    files = list(hf.list_lfs_files(repo))
    assert [(f.filename, f.file_oid, f.oid, f.size, f.ref) for f in files] == [
        ("weights/leak.bin", _sha(leak), _sha(leak), len(leak), "refs/heads/main"),
        ("keep.bin", _sha(keep), _sha(keep), len(keep), "refs/heads/main"),
    ]  # config.json, notes.txt and .gitattributes are regular files
    added = {c.title: c.created_at for c in hf.list_repo_commits(repo)}
    assert abs(files[0].pushed_at - added["add leak"]) < timedelta(seconds=1)
    assert abs(files[1].pushed_at - added["add keep"]) < timedelta(seconds=1)

    auth = {"authorization": f"Bearer {hub.token}"}
    first = httpx.get(f"{hub.url}/api/models/{repo}/lfs-files", params={"limit": 1}, headers=auth)
    assert first.status_code == 200 and [i["fileOid"] for i in first.json()] == [_sha(leak)]
    second = httpx.get(first.links["next"]["url"], headers=auth)
    assert [i["fileOid"] for i in second.json()] == [_sha(keep)] and "next" not in second.links

    before = _history(hf, repo)
    leak_commit = next(i for i, title in before["main"] if title == "add leak")
    hf.permanently_delete_lfs_files(repo, [files[0]])

    after = _history(hf, repo)
    for rev in REVS:
        assert [t for _, t in after[rev]] == [t for _, t in before[rev]], rev
        assert after[rev][-1] == before[rev][-1]  # the initial commit did not hold the file: it stays
        assert all(new != old for (new, _), (old, _) in zip(after[rev][:-1], before[rev][:-1], strict=True)), rev
        for commit_id, _ in after[rev]:
            assert "weights/leak.bin" not in hf.list_repo_files(repo, revision=commit_id)
    assert set(hf.list_repo_files(repo, revision="dev")) == {".gitattributes", "config.json", "keep.bin", "notes.txt"}
    assert _read(hub, repo, "keep.bin", "main", tmp_path) == keep
    assert _read(hub, repo, "notes.txt", "dev", tmp_path) == NOTES
    assert _read(hub, repo, "config.json", "v1", tmp_path) == CONFIG
    assert [f.file_oid for f in hf.list_lfs_files(repo)] == [_sha(keep)]
    assert _read(hub, repo, "weights/leak.bin", leak_commit, tmp_path) == leak  # until the GC takes it

    store = store_of(hub)
    assert _gc(hub).commits == 0  # all young: nothing goes before the grace period
    age_everything(hub, AGED)
    assert _gc(hub).commits >= len(before["main"]) - 1
    with pytest.raises(HfHubHTTPError) as gone:
        hf.list_repo_files(repo, revision=leak_commit)
    assert _status(gone) == 404
    assert store.exists(_sha(leak))  # the other repo still holds the same bytes
    assert _read(hub, other, "copy.bin", "main", tmp_path / "other") == leak
    assert _read(hub, repo, "keep.bin", "dev", tmp_path / "again") == keep

    hf.delete_repo(other)
    age_everything(hub, AGED)
    _gc(hub)
    assert not store.exists(_sha(leak)) and store.exists(_sha(keep))


def test_only_writers_purge_and_a_bad_batch_changes_nothing(hub: HubProcess, people: People, unique: str) -> None:
    alice = HfApi(endpoint=hub.url, token=people.alice)
    repo, hidden = f"alice/{unique}", f"alice/{unique}-private"
    data = opaque_bytes(120_000)
    alice.create_repo(repo)
    alice.create_repo(hidden, private=True)
    for name in (repo, hidden):
        alice.upload_file(path_or_fileobj=data, path_in_repo="model.bin", repo_id=name)
    files = list(alice.list_lfs_files(repo))
    assert [f.file_oid for f in files] == [_sha(data)]
    heads = [c.commit_id for c in alice.list_repo_commits(repo)]

    bob = HfApi(endpoint=hub.url, token=people.bob)
    assert [f.file_oid for f in bob.list_lfs_files(repo)] == [_sha(data)]  # readers may list
    with pytest.raises(HfHubHTTPError) as invisible:
        list(bob.list_lfs_files(hidden))
    assert _status(invisible) == 404
    for token, status in ((people.alice_read, 403), (people.bob, 403)):
        with pytest.raises(HfHubHTTPError) as refused:
            HfApi(endpoint=hub.url, token=token).permanently_delete_lfs_files(repo, files)
        assert _status(refused) == status
    assert _batch(hub, hidden, people.bob, [_sha(data)]).status_code == 404

    unknown = _sha(b"never uploaded")
    r = _batch(hub, repo, people.alice, [_sha(data), unknown])
    assert r.status_code == 400 and unknown in r.json()["error"], r.text
    r = _batch(hub, repo, people.alice, ["not-a-sha"])
    assert r.status_code == 400 and "not-a-sha" in r.json()["error"], r.text
    r = _batch(hub, repo, people.alice, [_sha(data)], rewrite=False)
    assert r.status_code == 400 and "rewriting history" in r.json()["error"], r.text
    assert [c.commit_id for c in alice.list_repo_commits(repo)] == heads
    assert [f.file_oid for f in alice.list_lfs_files(repo)] == [_sha(data)]

    r = _batch(hub, repo, people.alice, [_sha(data)])
    assert r.status_code == 200, r.text
    assert [m["ref"] for m in r.json()["updatedRefs"]] == ["refs/heads/main"]
    assert list(alice.list_lfs_files(repo)) == [] and "model.bin" not in alice.list_repo_files(repo)
    assert [f.file_oid for f in alice.list_lfs_files(hidden)] == [_sha(data)]  # the other repo keeps its file
