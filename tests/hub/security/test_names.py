"""Issue #12, names as git has them, against a live hub (SQLite and PostgreSQL) through the stock client: a branch
or tag named like a commit id, or as git refuses, is a 400 in the Hub's error shape, and a download pinned to a
commit id gets that commit's bytes whatever branches are made; a path segment that is ``.git`` in any case is
refused for new files; account names that are the hub's own first path segments are reserved."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError
from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Ref, Repo
from tests import zygote
from tests.hubtools import HubProcess

GIT_REFUSES = [
    "a\x01b",
    "HEAD",
    "refs/heads/x",
    ".hidden",
    "@",
    "x.lock",
    "a..b",
    "a b",
    "a~1",
    "a^b",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "a@{1}",
    "-x",
    "x/",
    "x.",
    "a//b",
    "a/.b",
    "a.lock/b",
    "a\x7fb",
]
HUB_REFUSES = ["refs/pr/1", "deadbee", "0123456789abcdef0123456789abcdef01234567", "CAFEBABE"]


def _api(hub: HubProcess) -> HfApi:
    return HfApi(endpoint=hub.url, token=hub.token)


def _refused(error: pytest.ExceptionInfo[HfHubHTTPError], *words: str) -> None:
    """A 400 in the Hub's shape: ``X-Error-Code``, an ``X-Error-Message`` and ``{"error": ...}`` naming ``words``."""
    response = error.value.response
    assert response is not None
    assert (response.status_code, response.headers.get("x-error-code")) == (400, "BadRequest"), response.text
    assert response.headers.get("x-error-message")
    assert all(w in response.json()["error"] for w in words), response.json()


def _download(hub: HubProcess, repo: str, revision: str, cache: Path) -> bytes:
    path = hf_hub_download(repo, "weights.bin", revision=revision, endpoint=hub.url, token=hub.token, cache_dir=cache)
    return Path(path).read_bytes()


@pytest.fixture
def pinned(hub: HubProcess, unique: str) -> tuple[str, str]:
    """A repo with ``weights.bin`` = ``b"original"`` and the id of that commit."""
    api = _api(hub)
    repo = api.create_repo(unique).repo_id
    info = api.upload_file(path_or_fileobj=b"original", path_in_repo="weights.bin", repo_id=repo)
    return repo, info.oid


def test_a_branch_named_like_a_commit_id_is_refused_and_pins_hold(
    hub: HubProcess, pinned: tuple[str, str], tmp_path: Path
) -> None:
    repo, sha = pinned
    api = _api(hub)
    for name in (sha, sha[:7], sha[:12], sha.upper()):
        with pytest.raises(HfHubHTTPError) as refused:
            api.create_branch(repo, branch=name)
        _refused(refused, "invalid branch name", "commit id")
        with pytest.raises(HfHubHTTPError) as refused:
            api.create_tag(repo, tag=name)
        _refused(refused, "invalid tag name", "commit id")
    assert {b.name for b in api.list_repo_refs(repo).branches} == {"main"}
    api.create_branch(repo, branch="dev")
    api.upload_file(path_or_fileobj=b"other bytes", path_in_repo="weights.bin", repo_id=repo, revision="dev")
    assert _download(hub, repo, sha, tmp_path / "a") == b"original"
    assert _download(hub, repo, "dev", tmp_path / "b") == b"other bytes"
    assert httpx.get(f"{hub.url}/{repo}/resolve/{sha}/weights.bin").content == b"original"


def test_a_commit_id_wins_over_an_older_branch_of_that_name(
    hub: HubProcess, pinned: tuple[str, str], tmp_path: Path
) -> None:
    """A hub before issue #12 allowed the branch; the commit id resolves first, the branch's own commits stay
    readable through it only where it is not a commit id."""
    repo, sha = pinned
    api = _api(hub)
    api.create_branch(repo, branch="dev")
    other = api.upload_file(path_or_fileobj=b"hijack", path_in_repo="weights.bin", repo_id=repo, revision="dev").oid
    db = Database(hub.database_url)
    try:
        with db.write() as session:
            row = session.scalars(select(Repo).where(Repo.name == repo.split("/")[1])).one()
            session.add(Ref(repo_id=row.id, kind="branch", name=sha, commit_id=other))
    finally:
        db.dispose()
    assert _download(hub, repo, sha, tmp_path / "a") == b"original"
    assert api.model_info(repo, revision=sha).sha == sha
    assert sha in {b.name for b in api.list_repo_refs(repo).branches}  # still listed: reads of old names work


@pytest.fixture(scope="module")
def plain(hub: HubProcess) -> str:
    """One repo with one commit, for the tests that change nothing in it."""
    api = _api(hub)
    repo = api.create_repo("names-plain").repo_id
    api.upload_file(path_or_fileobj=b"original", path_in_repo="weights.bin", repo_id=repo)
    return repo


@pytest.mark.parametrize("name", GIT_REFUSES + HUB_REFUSES, ids=repr)
def test_names_git_or_the_hub_refuse_are_a_400(hub: HubProcess, plain: str, name: str) -> None:
    api = _api(hub)
    with pytest.raises(HfHubHTTPError) as refused:
        api.create_branch(plain, branch=name)
    _refused(refused, "invalid branch name")
    with pytest.raises(HfHubHTTPError) as refused:
        api.create_tag(plain, tag=name)
    _refused(refused, "invalid tag name")
    refs = api.list_repo_refs(plain)
    assert ([b.name for b in refs.branches], refs.tags) == (["main"], [])


def test_names_git_allows_are_created(hub: HubProcess, pinned: tuple[str, str]) -> None:
    repo, sha = pinned
    api = _api(hub)
    for name in ("feature/x", "v1.0", "exp-2", "über", "deadbe", "@x", "release-2024-01-01"):
        api.create_branch(repo, branch=name)
        api.create_tag(repo, tag=f"t-{name}")
    assert api.model_info(repo, revision="feature/x").sha == sha


def test_a_pull_request_ref_reads_as_a_revision(hub: HubProcess, pinned: tuple[str, str], tmp_path: Path) -> None:
    """``refs/pr/N`` is the Hub's way to name a pull request: a revision that is not found here, not a bad name."""
    repo, _ = pinned
    with pytest.raises(RevisionNotFoundError):
        _download(hub, repo, "refs/pr/1", tmp_path)


def _commit(hub: HubProcess, repo: str, op: dict[str, Any]) -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": "s"}}, op]
    return httpx.post(
        f"{hub.url}/api/models/{repo}/commit/main",
        content="\n".join(map(json.dumps, lines)),
        headers={"authorization": f"Bearer {hub.token}", "content-type": "application/x-ndjson"},
    )


@pytest.mark.parametrize(
    "path", [".GIT/config", "sub/.Git/x", ".git/hooks/post-checkout", "a/.git./x", "GIT~1/config", ".g\u200cit/config"]
)
def test_a_dot_git_segment_in_any_case_is_refused(hub: HubProcess, plain: str, path: str) -> None:
    api = _api(hub)
    sha = api.model_info(plain).sha
    if ".git" in path.split("/"):  # the client itself refuses exactly '.git'
        with pytest.raises(ValueError, match=r"\.git"):
            api.upload_file(path_or_fileobj=b"[core]\n", path_in_repo=path, repo_id=plain)
    else:
        with pytest.raises(HfHubHTTPError) as refused:
            api.upload_file(path_or_fileobj=b"[core]\n", path_in_repo=path, repo_id=plain)
        _refused(refused, "invalid path", ".git")
    # the commit itself refuses it too, inline and as LFS, whatever the client asked before
    inline = {"key": "file", "value": {"path": path, "content": base64.b64encode(b"x").decode(), "encoding": "base64"}}
    lfs = {
        "key": "lfsFile",
        "value": {"path": path, "algo": "sha256", "oid": hashlib.sha256(b"x").hexdigest(), "size": 1},
    }
    for op in (inline, lfs):
        response = _commit(hub, plain, op)
        assert (response.status_code, response.headers["x-error-code"]) == (400, "BadRequest"), response.text
        assert "invalid path" in response.json()["error"]
    assert api.model_info(plain).sha == sha


def test_names_near_dot_git_are_files_like_any(hub: HubProcess, pinned: tuple[str, str]) -> None:
    repo, _ = pinned
    api = _api(hub)
    for path in (".github/workflows/ci.yml", ".gitignore", "sub/x.git/a", "a/.gitx"):
        api.upload_file(path_or_fileobj=b"x", path_in_repo=path, repo_id=repo)
    assert {".github/workflows/ci.yml", ".gitignore", "sub/x.git/a", "a/.gitx"} <= set(api.list_repo_files(repo))


def _openckpt(*args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("openckpt")
    return zygote.run([str(cli), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["cas", "admin", "v1", "api", "API", "settings", "organizations", "static"])
def test_account_names_of_the_hubs_own_paths_are_reserved(hub: HubProcess, name: str) -> None:
    user = _openckpt("user", "create", name, "--database-url", hub.database_url)
    assert user.returncode == 2 and "reserved" in user.stderr, user
    org = _openckpt("org", "create", name, "--owner", "admin", "--database-url", hub.database_url)
    assert org.returncode == 2 and "reserved" in org.stderr, org


def test_the_bootstrap_admin_keeps_its_pages(hub: HubProcess, pinned: tuple[str, str]) -> None:
    """``admin`` is reserved, and the account the hub made for itself at its first start keeps working."""
    repo, _ = pinned
    assert repo.startswith("admin/")
    assert httpx.get(f"{hub.url}/{repo}").status_code == 200
    assert httpx.get(f"{hub.url}/admin").status_code == 200
