"""``HfApi.super_squash_history`` on real hub processes (SQLite and PostgreSQL): a branch's history becomes one commit
of its current files, tags and other branches keep theirs, garbage collection then reclaims what only the squashed
history used, writers' rights are checked as for commits, and concurrent commits are never lost."""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from openckpt.hub.db.models import Blob, Commit
from openckpt.hub.services.storage.fsck import check
from openckpt.hub.services.storage.gc import GcReport, collect
from tests.hub.conftest import People
from tests.hub.storagetools import age_everything, api, database, store_of
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes

GRACE = timedelta(hours=1)
AGED = timedelta(hours=2)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gc(hub: HubProcess) -> GcReport:
    with database(hub) as db:
        return collect(db, store_of(hub), grace=GRACE, multipart_dir=hub.data_dir / "multipart")


def _downloads(hub: HubProcess, repo: str, path: str, data: bytes, cache: Path, revision: str = "main") -> None:
    local = hf_hub_download(repo, path, revision=revision, endpoint=hub.url, token=hub.token, cache_dir=cache)
    assert _sha(Path(local).read_bytes()) == _sha(data), f"{path}@{revision} came back different"


def _history_bytes(hub: HubProcess, repo: str) -> int:
    r = httpx.get(f"{hub.url}/api/models/{repo}/storage", headers={"authorization": f"Bearer {hub.token}"})
    assert r.status_code == 200, r.text
    value: int = r.json()["historyBytes"]
    return value


def _tree(hf: HfApi, repo: str, revision: str = "main") -> dict[str, str | None]:
    files = hf.list_repo_tree(repo, revision=revision, recursive=True)
    return {f.path: getattr(f, "blob_id", None) for f in files}


def test_squash_keeps_the_files_and_gc_reclaims_only_the_squashed_history(
    hub: HubProcess, unique: str, tmp_path: Path
) -> None:
    hf, store, repo = api(hub), store_of(hub), f"admin/{unique}"
    tagged, on_dev, squashed_away, head = (opaque_bytes(n) for n in (150_000, 160_000, 170_000, 180_000))
    hf.create_repo(repo)
    hf.upload_file(path_or_fileobj=b'{"step": 0}', path_in_repo="config.json", repo_id=repo)
    for version in (tagged, on_dev, squashed_away, head):
        hf.upload_file(path_or_fileobj=version, path_in_repo="weights.bin", repo_id=repo)
        if version is tagged:
            hf.create_tag(repo, tag="v1")
        elif version is on_dev:
            hf.create_branch(repo, branch="dev")
    before = hf.list_repo_commits(repo)
    assert len(before) == 6  # the initial commit, config.json and four versions
    old_head, squashed_commit = before[0].commit_id, before[1].commit_id
    files_before = _tree(hf, repo)
    dev_before = [c.commit_id for c in hf.list_repo_commits(repo, revision="dev")]
    history_before = _history_bytes(hub, repo)

    hf.super_squash_history(repo)

    after = hf.list_repo_commits(repo)
    assert len(after) == 1
    new = after[0]
    assert re.fullmatch(r"[0-9a-f]{40}", new.commit_id) and new.commit_id != old_head
    assert new.title == "Super-squash branch 'main' using huggingface_hub" and new.authors == ["admin"]
    assert _tree(hf, repo) == files_before
    with database(hub) as db, db.read() as session:
        squash, previous = session.get(Commit, new.commit_id), session.get(Commit, old_head)
        assert squash is not None and previous is not None
        assert squash.parent_id is None and squash.tree_id == previous.tree_id
    refs = hf.list_repo_refs(repo)
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": before[3].commit_id}
    assert [c.commit_id for c in hf.list_repo_commits(repo, revision="dev")] == dev_before
    _downloads(hub, repo, "weights.bin", head, tmp_path)
    _downloads(hub, repo, "weights.bin", tagged, tmp_path, revision="v1")
    _downloads(hub, repo, "weights.bin", squashed_away, tmp_path, revision=squashed_commit)  # until collected
    assert _history_bytes(hub, repo) == history_before

    assert _gc(hub).commits == 0  # all young: nothing goes yet
    assert store.exists(_sha(squashed_away))
    age_everything(hub, AGED)  # the grace period passes
    report = _gc(hub)
    assert report.commits >= 2 and report.blobs >= 1, report  # the squashed commits after dev's, and their blob
    assert not store.exists(_sha(squashed_away))
    for kept in (tagged, on_dev, head):
        assert store.exists(_sha(kept))
    with database(hub) as db, db.read() as session:
        assert session.get(Blob, _sha(squashed_away)) is None
        assert session.get(Commit, squashed_commit) is None and session.get(Commit, old_head) is None
        assert check(db, store).ok
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "weights.bin", revision=squashed_commit, endpoint=hub.url, token=hub.token,
                        cache_dir=tmp_path / "gone")  # fmt: skip
    _downloads(hub, repo, "weights.bin", head, tmp_path / "again")
    _downloads(hub, repo, "config.json", b'{"step": 0}', tmp_path / "again")
    _downloads(hub, repo, "weights.bin", tagged, tmp_path / "again", revision="v1")
    _downloads(hub, repo, "weights.bin", on_dev, tmp_path / "again", revision="dev")
    assert len(hf.list_repo_commits(repo)) == 1
    assert _history_bytes(hub, repo) == history_before - len(squashed_away)


def test_custom_message_on_a_branch_with_a_slash(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    hf, repo = api(hub), f"admin/{unique}"
    hf.create_repo(repo)
    hf.create_branch(repo, branch="team/exp")
    for step in range(3):
        hf.upload_file(path_or_fileobj=f"step {step}".encode(), path_in_repo="log.txt", repo_id=repo,
                       revision="team/exp")  # fmt: skip
    main_before = [c.commit_id for c in hf.list_repo_commits(repo)]

    hf.super_squash_history(repo, branch="team/exp", commit_message="weekly squash")

    (only,) = hf.list_repo_commits(repo, revision="team/exp")
    assert only.title == "weekly squash"
    _downloads(hub, repo, "log.txt", b"step 2", tmp_path, revision="team/exp")
    assert [c.commit_id for c in hf.list_repo_commits(repo)] == main_before
    hf.upload_file(path_or_fileobj=b"step 3", path_in_repo="log.txt", repo_id=repo, revision="team/exp")
    assert [c.title for c in hf.list_repo_commits(repo, revision="team/exp")][1:] == ["weekly squash"]


def test_writers_only_and_only_branches(hub: HubProcess, people: People, unique: str) -> None:
    alice, repo, secret = api(hub, people.alice), f"lab/{unique}", f"lab/{unique}-secret"
    alice.create_repo(repo)
    alice.create_repo(secret, private=True)
    alice.upload_file(path_or_fileobj=b"a", path_in_repo="a.txt", repo_id=repo)
    alice.create_tag(repo, tag="v1")
    commits = [c.commit_id for c in alice.list_repo_commits(repo)]

    for token in (people.alice_read, people.olga, people.bob):  # a read token, a reader of the org, a stranger
        with pytest.raises(HfHubHTTPError) as denied:
            api(hub, token).super_squash_history(repo)
        assert denied.value.response.status_code == 403
    with pytest.raises(RepositoryNotFoundError):
        api(hub, people.bob).super_squash_history(secret)  # private: as if it did not exist
    anonymous = httpx.post(f"{hub.url}/api/models/{repo}/super-squash/main", json={"message": "x"})
    assert anonymous.status_code == 401
    with pytest.raises(RevisionNotFoundError):
        alice.super_squash_history(repo, branch="nope")
    for not_a_branch in ("v1", commits[0]):
        with pytest.raises(BadRequestError):
            alice.super_squash_history(repo, branch=not_a_branch)
    assert [c.commit_id for c in alice.list_repo_commits(repo)] == commits

    api(hub, people.wendy).super_squash_history(repo)  # a writer of the org
    (only,) = alice.list_repo_commits(repo)
    assert only.authors == ["wendy"]
    api(hub, people.alice).super_squash_history(secret)


def test_concurrent_commits_are_never_lost(hub: HubProcess, unique: str) -> None:
    hf, repo, writers, each = api(hub), f"admin/{unique}", 4, 3
    hf.create_repo(repo)

    def write(n: int) -> None:
        for i in range(each):
            hf.upload_file(path_or_fileobj=f"{n}.{i}".encode(), path_in_repo=f"w{n}/{i}.txt", repo_id=repo)

    def squash(_: int) -> None:
        for _ in range(each):
            hf.super_squash_history(repo)

    with ThreadPoolExecutor(writers + 2) as pool:
        list(pool.map(lambda job: job[0](job[1]), [(write, n) for n in range(writers)] + [(squash, 0), (squash, 1)]))
    files = {p for p in _tree(hf, repo) if p.startswith("w") and "/" in p}
    assert files == {f"w{n}/{i}.txt" for n in range(writers) for i in range(each)}
    commits = hf.list_repo_commits(repo)
    assert 1 <= len(commits) <= writers * each + 1
