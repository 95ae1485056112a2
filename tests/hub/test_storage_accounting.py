"""Storage accounting on real hub processes: two repos holding the same file share its bytes (per repo, per owner,
in total), xorbs used by several repos count them, one repo's figures equal its entry in the hub's, who may read
the figures (API and admin page), and a namespace's repos with their storage through the stock client
(``list_user_repos``, ``hf repos ls``). On random hub states in the database, ``account_repo`` and
``account_owner`` equal ``account``."""

from __future__ import annotations

import json
import random
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from sqlalchemy import select

from openckpt.errors import RepoNotFoundError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Blob, Commit, Ref, Repo, TreeItem, XetFile, XetSha256, XetTerm, Xorb
from openckpt.hub.services.storage.accounting import account, account_owner, account_repo
from openckpt.hub.services.tree_writes import store_files
from openckpt.hub.services.trees import FileEntry
from openckpt.store.local import LocalBlobStore
from tests.hub.conftest import client_env, run_checked
from tests.hub.storagetools import XetUpload, api, commit_xet
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes


@pytest.fixture(scope="module")
def alice(hub: HubProcess) -> str:
    return hub.create_user("alice")


def _get(hub: HubProcess, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{hub.url}{path}", headers=headers, timeout=60, **kwargs)


def _repo(report: dict[str, Any], repo_id: str) -> dict[str, Any]:
    return next(r for r in report["repos"] if r["id"] == repo_id)


def test_the_same_file_in_two_repos_is_stored_once_and_shared(hub: HubProcess, alice: str, unique: str) -> None:
    shared, mine, yours = opaque_bytes(300_000), opaque_bytes(100_000), opaque_bytes(50_000)
    a, b = f"alice/{unique}-a", f"admin/{unique}-b"
    api(hub, alice).create_repo(a)
    api(hub).create_repo(b)
    for repo, token, own in ((a, alice, mine), (b, hub.token, yours)):
        api(hub, token).upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id=repo)
        api(hub, token).upload_file(path_or_fileobj=own, path_in_repo="own.bin", repo_id=repo)

    r = _get(hub, "/api/admin/storage", hub.token)
    assert r.status_code == 200, r.text
    report = r.json()
    first = _repo(report, a)
    gitattributes = first["sharedBytes"] - len(shared)  # every repo starts with the same .gitattributes
    assert 0 < gitattributes < 10_000
    assert first["uniqueBytes"] == len(mine)
    assert first["historyBytes"] == first["logicalBytes"] == len(shared) + len(mine) + gitattributes
    assert len(mine) + len(shared) / 2 <= first["physicalBytes"] <= len(mine) + len(shared) / 2 + gitattributes
    assert first["dedupRatio"] > 1.3
    second = _repo(report, b)
    assert second["uniqueBytes"] == len(yours)
    assert second["physicalBytes"] + first["physicalBytes"] <= len(shared) + len(mine) + len(yours) + gitattributes
    owner = next(o for o in report["owners"] if o["name"] == "alice")
    assert owner["uniqueBytes"] >= len(mine) and owner["sharedBytes"] >= len(shared)
    total = report["total"]
    assert total["historyBytes"] >= 2 * len(shared) + len(mine) + len(yours)
    assert total["physicalBytes"] <= total["storedBytes"] and total["dedupRatio"] > 1
    assert sum(r["physicalBytes"] for r in report["repos"]) == pytest.approx(
        total["physicalBytes"], abs=len(report["repos"])
    )

    mine_only = _get(hub, f"/api/models/{a}/storage", alice)
    assert mine_only.status_code == 200 and mine_only.json() == first
    assert _get(hub, f"/api/models/{a}/storage").status_code == 200  # public: its readers are everyone


def test_a_xorb_used_by_two_repos_counts_both(hub: HubProcess, alice: str, unique: str) -> None:
    up = XetUpload(opaque_bytes(400_000))
    a, b = f"alice/{unique}-xa", f"admin/{unique}-xb"
    api(hub, alice).create_repo(a)
    api(hub).create_repo(b)
    commit_xet(hub, a, up, "x.bin", alice)
    commit_xet(hub, b, up, "same.bin")  # the second upload is deduplicated: same xorb, same Xet file
    report = _get(hub, "/api/admin/storage?xorbs=100000", hub.token).json()
    xorb = next(x for x in report["xorbs"] if x["hash"] == up.xorb_hex)
    assert (xorb["files"], xorb["repos"]) == (1, 2)
    assert 0 < xorb["bytes"] <= len(up.data) + 4096
    assert _repo(report, a)["sharedBytes"] >= xorb["bytes"]
    assert report["total"]["sharedXorbs"] >= 1


def test_each_repos_figures_equal_its_entry_in_the_hubs(hub: HubProcess, alice: str, unique: str) -> None:
    shared, one, two = opaque_bytes(200_000), XetUpload(opaque_bytes(400_000)), XetUpload(opaque_bytes(300_000))
    a, b, c, d = f"alice/{unique}-ea", f"admin/{unique}-eb", f"alice/{unique}-ec", f"admin/{unique}-ed"
    api(hub, alice).create_repo(a)
    api(hub).create_repo(b)
    api(hub, alice).create_repo(c, repo_type="dataset")
    api(hub).create_repo(d)
    for repo, token, kind in ((a, alice, "model"), (b, hub.token, "model"), (c, alice, "dataset")):
        api(hub, token).upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id=repo, repo_type=kind)
    commit_xet(hub, a, one, "one.bin", alice)
    commit_xet(hub, b, one, "one.bin")
    commit_xet(hub, b, two, "two.bin")
    commit_xet(hub, d, two, "two-again.bin")
    for version in (opaque_bytes(70_000), opaque_bytes(80_000)):  # history beyond the head
        api(hub).upload_file(path_or_fileobj=version, path_in_repo="v.bin", repo_id=d)
    api(hub, alice).create_branch(c, branch="dev", repo_type="dataset")
    api(hub, alice).upload_file(path_or_fileobj=opaque_bytes(60_000), path_in_repo="dev.bin", repo_id=c,
                                repo_type="dataset", revision="dev")  # fmt: skip

    report = _get(hub, "/api/admin/storage", hub.token).json()
    assert {a, b, c, d} <= {r["id"] for r in report["repos"]}
    assert _repo(report, a)["sharedBytes"] > len(shared) + len(one.data) / 2
    for entry in report["repos"]:  # this test's repos and those of the module's other tests
        r = _get(hub, f"/api/{entry['type']}s/{entry['id']}/storage", hub.token)
        assert r.status_code == 200, r.text
        assert r.json() == entry


def test_who_may_see_storage(hub: HubProcess, alice: str, unique: str) -> None:
    secret = f"alice/{unique}-private"
    api(hub, alice).create_repo(secret, private=True)
    assert _get(hub, f"/api/models/{secret}/storage", alice).status_code == 200
    assert _get(hub, f"/api/models/{secret}/storage", hub.token).status_code == 200
    assert _get(hub, f"/api/models/{secret}/storage").status_code == 404  # hidden, as if absent
    assert _get(hub, "/api/admin/storage").status_code == 401
    assert _get(hub, "/api/admin/storage", alice).status_code == 403

    page = httpx.get(f"{hub.url}/admin/storage", headers={"authorization": f"Bearer {hub.token}"})
    assert page.status_code == 200 and "Storage" in page.text and secret in page.text
    assert 'href="/admin/storage"' in page.text  # admins see the link in the header
    home = httpx.get(f"{hub.url}/", headers={"authorization": f"Bearer {alice}"})
    assert 'href="/admin/storage"' not in home.text
    assert httpx.get(f"{hub.url}/admin/storage", headers={"authorization": f"Bearer {alice}"}).status_code == 403
    anonymous = httpx.get(f"{hub.url}/admin/storage")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


def _owned(hub: HubProcess, owner: str) -> dict[str, int]:
    """The ``physicalBytes`` of each repo of ``owner`` in the hub's accounting."""
    report = _get(hub, "/api/admin/storage", hub.token).json()
    return {r["id"]: r["physicalBytes"] for r in report["repos"] if r["owner"] == owner}


def _check_listing(listed: list[Any], hub: HubProcess, owner: str) -> None:
    """``listed`` holds every repo of ``owner`` with its storage in the hub's accounting, the largest first."""
    assert {r.id: r.storage for r in listed} == _owned(hub, owner)
    assert [(-r.storage, r.id) for r in listed] == sorted((-r.storage, r.id) for r in listed)
    assert sum(r.storage_percent for r in listed) == pytest.approx(100)
    now = datetime.now(UTC)
    assert all(now - timedelta(hours=1) < r.updated_at <= now + timedelta(minutes=1) for r in listed)


def test_list_user_repos_gives_a_namespaces_repos_and_storage(hub: HubProcess, alice: str, unique: str) -> None:
    org, reader = f"{unique}-org", f"{unique}-reader"
    reader_token, outsider = hub.create_user(reader), hub.create_user(f"{unique}-out")
    hub.create_org(org, {"alice": "write", reader: "read"})
    shared = opaque_bytes(250_000)
    model, data, space = f"alice/{unique}-lm", f"alice/{unique}-ld", f"alice/{unique}-ls"
    api(hub, alice).create_repo(model)
    api(hub, alice).create_repo(data, repo_type="dataset", private=True)
    api(hub, alice).create_repo(space, repo_type="space", space_sdk="static")
    in_org = [f"{org}/m{i}" for i in range(5)]
    for repo in in_org:
        api(hub, alice).create_repo(repo)
    for repo, kind in ((model, "model"), (data, "dataset"), (in_org[0], "model")):
        api(hub, alice).upload_file(path_or_fileobj=shared, path_in_repo="w.bin", repo_id=repo, repo_type=kind)
    api(hub, alice).upload_file(path_or_fileobj=opaque_bytes(90_000), path_in_repo="own.bin", repo_id=model)

    mine = list(HfApi(endpoint=hub.url, token=alice).list_user_repos())
    _check_listing(mine, hub, "alice")
    kinds = {r.id: (r.type, r.visibility) for r in mine}
    assert kinds[model] == ("model", "public") and kinds[data] == ("dataset", "private")
    assert kinds[space] == ("space", "public")
    top = next(r for r in mine if r.id == model)
    assert len(shared) / 3 + 90_000 <= top.storage < len(shared) / 3 + 90_000 + 10_000  # its share of w.bin
    for token in (reader_token, hub.token):  # any member, and hub admins
        of_org = list(HfApi(endpoint=hub.url, token=token).list_user_repos(namespace=org))
        _check_listing(of_org, hub, org)
        assert {r.id for r in of_org} == set(in_org) and of_org[0].id == in_org[0]

    url, pages, seen = f"{hub.url}/api/organizations/{org}/settings/repositories?limit=2", 0, []
    while url:  # paged by ``limit`` and the Link header, as the client's ``paginate`` follows it
        r = httpx.get(url, headers={"authorization": f"Bearer {reader_token}"}, timeout=60)
        assert r.status_code == 200 and len(r.json()) <= 2, r.text
        seen += [item["id"] for item in r.json()]
        url, pages = r.links.get("next", {}).get("url", ""), pages + 1
    assert pages == 3 and seen == [r.id for r in of_org]

    with pytest.raises(HfHubHTTPError) as anonymous:
        list(HfApi(endpoint=hub.url, token=False).list_user_repos())
    assert anonymous.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as stranger:
        list(HfApi(endpoint=hub.url, token=outsider).list_user_repos(namespace=org))
    assert stranger.value.response.status_code == 403
    assert _get(hub, f"/api/organizations/{org}/settings/repositories").status_code == 401
    assert _get(hub, f"/api/organizations/{unique}-none/settings/repositories", alice).status_code == 404
    assert _get(hub, "/api/organizations/alice/settings/repositories", alice).status_code == 404  # a user
    assert _get(hub, "/api/settings/repositories?limit=x", alice).status_code == 400


def _hf() -> str:
    beside = Path(sys.executable).with_name("hf")
    found = str(beside) if beside.exists() else shutil.which("hf")
    assert found, "the hf command of huggingface_hub is not installed"
    return found


def test_hf_repos_ls(hub: HubProcess, alice: str, unique: str, tmp_path: Path) -> None:
    repo = f"alice/{unique}-cli"
    api(hub, alice).create_repo(repo, private=True)
    env = client_env(hub.url, tmp_path / "hf-home", HF_TOKEN=alice)
    listed = run_checked([_hf(), "repos", "ls", "--limit", "0", "--no-truncate"], env=env)
    assert repo in listed and "private" in listed
    as_json = run_checked([_hf(), "repos", "ls", "--limit", "0", "--json"], env=env)
    item = next(item for item in json.loads(as_json) if item["id"] == repo)
    assert (item["type"], item["visibility"]) == ("model", "private")


def _hex(rng: random.Random, digits: int = 64) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _add_world(db: Database, store: LocalBlobStore, rng: random.Random, round_: int) -> None:
    """Add random repos, files, blobs, Xet files and xorbs, some shared with each other and with earlier rounds."""
    with db.write() as session:
        old_xorbs = list(session.scalars(select(Xorb.hash)))
        old_files = [(sha256, int(size)) for sha256, size in session.execute(
            select(TreeItem.sha256, TreeItem.size).where(TreeItem.subtree.is_(None)))]  # fmt: skip
        owners = [Account(name=f"o{round_}-{i}", kind="user") for i in range(3)]
        session.add_all(owners)
        session.flush()
        repos = [Repo(type=rng.choice(["model", "dataset"]), owner_id=rng.choice(owners).id, name=f"r{i}")
                 for i in range(7)]  # fmt: skip
        session.add_all(repos)
        xorbs = [Xorb(hash=_hex(rng), blob_sha256=_hex(rng), serialized_size=rng.randint(1, 10**6),
                      unpacked_size=1, num_chunks=1) for _ in range(6)]  # fmt: skip
        session.add_all(xorbs)
        session.flush()
        pool = [x.hash for x in xorbs] + old_xorbs
        files = rng.sample(old_files, min(len(old_files), 6))
        for _ in range(14):
            kind = rng.choice(["blob", "xet", "xet+blob", "none"])
            size = rng.randint(0, 10**6)
            sha256 = _hex(rng)
            if kind == "xet+blob" and rng.random() < 0.5:  # the whole copy kept in the store
                writer = store.writer()
                writer.write(rng.randbytes(rng.randint(16, 64)))
                sha256 = writer.commit()
            if kind in ("blob", "xet+blob"):
                session.add(Blob(sha256=sha256, size=rng.randint(1, 10**6)))
            for _ in range(rng.randint(1, 2) if "xet" in kind else 0):  # a sha256 may name several Xet files
                file_hash = _hex(rng)
                session.add(XetFile(hash=file_hash, size=size, num_terms=3))
                session.flush()
                for index in range(rng.randint(1, 3)):
                    session.add(XetTerm(file_hash=file_hash, term_index=index, xorb_hash=rng.choice(pool),
                                        chunk_start=0, chunk_end=1, size=1))  # fmt: skip
                session.add(XetSha256(sha256=sha256, file_hash=file_hash, size=size, verified=rng.random() < 0.7))
            files.append((sha256, size))
        trees: list[str] = []
        for repo in repos[1:]:  # the first repo has no commit at all
            commits: list[str] = []
            for _ in range(rng.randint(1, 4)):
                if trees and rng.random() < 0.25:  # trees are content-addressed: repos may share one
                    tree = rng.choice(trees)
                else:  # some files in folders: trees share folders too
                    tree = store_files(session, [
                        FileEntry(f"d{n % 3}/f{n}" if n % 2 else f"f{n}", sha256, _hex(rng, 40), size, True)
                        for n, (sha256, size) in enumerate(rng.sample(files, rng.randint(0, 5)))
                    ])  # fmt: skip
                    trees.append(tree)
                commits.append(_hex(rng, 40))
                session.add(Commit(id=commits[-1], repo_id=repo.id, tree_id=tree, title="t", author="a"))
            session.add(Ref(repo_id=repo.id, kind="branch", name="main", commit_id=commits[-1]))
            if rng.random() < 0.5:
                session.add(Ref(repo_id=repo.id, kind="branch", name="dev", commit_id=rng.choice(commits)))
            if rng.random() < 0.5:
                session.add(Ref(repo_id=repo.id, kind="tag", name="v1", commit_id=rng.choice(commits)))


def test_account_repo_and_account_owner_equal_account(database: Database, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    rng = random.Random(20240611)
    for round_ in range(4):  # the state grows; later rounds share objects with earlier ones
        _add_world(database, store, rng, round_)
        hub = account(database, store)
        for repo_pk, usage in hub.repos.items():
            assert account_repo(database, store, repo_pk=repo_pk) == usage, usage.repo_id
        with database.read() as session:
            owners = dict(session.execute(select(Account.id, Account.name)).all())
        for owner_pk, name in owners.items():  # owners of no repo too: an empty dict
            expected = {pk: usage for pk, usage in hub.repos.items() if usage.owner == name}
            assert account_owner(database, store, owner_pk) == expected, name
        assert any(len(account_owner(database, store, pk)) > 1 for pk in owners)
    assert any(r.shared_bytes and r.unique_bytes for r in hub.repos.values())
    assert any(x.repos > 1 for x in hub.xorbs) and any(not r.files for r in hub.repos.values())
    with pytest.raises(RepoNotFoundError):
        account_repo(database, store, repo_pk=max(hub.repos) + 1)
