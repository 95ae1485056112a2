"""Issue #12, "every commit stores the whole file list again", replayed against a live hub (SQLite and PostgreSQL):
ten one-byte commits to a repo of 20,000 files add less than 1 MB to the database (about 66 MB when each commit
stored its whole file list), with the files in folders of 1,000 and with all of them in one folder; the listing and
the downloads, pinned ones included, are what they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.hf_api import RepoFile

from openckpt.hub.db.engine import Database
from tests.hubtools import HubProcess, Postgres, start_hub

FILES = 20_000
MB = 2**20
LAYOUTS: dict[str, Callable[[int], str]] = {
    "shards": lambda i: f"data/shard_{i // 1000:02d}/file_{i:05d}.txt",  # 20 folders of 1,000 files
    "flat": lambda i: f"train/part-{i:05d}.bin",  # one folder of 20,000 files
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    data = tmp_path_factory.mktemp("hub") / "data"
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(data, url)
    yield server
    server.stop()


def _database_bytes(hub: HubProcess) -> tuple[int, int]:
    """(bytes the database uses, rows of trees): SQLite's pages in use, PostgreSQL's whole database."""
    db = Database(hub.database_url)
    try:
        with db.engine.connect() as c:
            rows = int(c.exec_driver_sql("SELECT count(*) FROM tree_items").scalar_one())
            if c.dialect.name == "sqlite":
                used = c.exec_driver_sql("PRAGMA page_count").scalar_one()
                used -= c.exec_driver_sql("PRAGMA freelist_count").scalar_one()
                return int(used * c.exec_driver_sql("PRAGMA page_size").scalar_one()), rows
            return int(c.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()), rows
    finally:
        db.dispose()


def _add_many(hub: HubProcess, repo: str, paths: list[str], oid: str, size: int) -> None:
    """One commit naming the LFS object ``oid`` at every path (an NDJSON commit, as the client sends it)."""
    lines: list[dict[str, Any]] = [{"key": "header", "value": {"summary": f"add {len(paths)} files"}}]
    lines += [{"key": "lfsFile", "value": {"path": p, "algo": "sha256", "oid": oid, "size": size}} for p in paths]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    headers = {"authorization": f"Bearer {hub.token}", "content-type": "application/x-ndjson"}
    r = httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content=body, headers=headers, timeout=600)
    assert r.status_code == 200, r.text


def _listing(api: HfApi, repo: str, revision: str) -> dict[str, tuple[str, Any, Any]]:
    found = {}
    for item in api.list_repo_tree(repo, recursive=True, revision=revision):
        oid = getattr(item, "blob_id", None) or getattr(item, "tree_id", None)
        found[item.path] = (type(item).__name__, getattr(item, "size", None), oid)
    return found


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_ten_one_byte_commits_to_20000_files_add_under_1_mb(hub: HubProcess, layout: str, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = f"admin/many-{layout}"
    api.create_repo(repo)
    seed = b"tree-growth test data\n" + os.urandom(4096)  # opaque data: random bytes alone may sniff as a pickle
    oid = hashlib.sha256(seed).hexdigest()
    api.create_commit(repo, [CommitOperationAdd("seed.bin", seed)], commit_message="the bytes every file names")
    paths = [LAYOUTS[layout](i) for i in range(FILES)]
    _add_many(hub, repo, paths, oid, len(seed))
    before = api.model_info(repo).sha
    assert before is not None
    listed = _listing(api, repo, before)
    assert sum(1 for kind, _, _ in listed.values() if kind == "RepoFile") == FILES + 2  # .gitattributes, seed.bin
    target = paths[FILES // 2 + 7]

    size0, rows0 = _database_bytes(hub)
    for n in range(10):
        api.create_commit(repo, [CommitOperationAdd(target, bytes([65 + n]))], commit_message=f"one byte {n}")
    size1, rows1 = _database_bytes(hub)
    print(f"\n{layout}: ten one-byte commits added {size1 - size0} bytes and {rows1 - rows0} tree rows")
    assert size1 - size0 < 1 * MB
    assert rows1 - rows0 < 10 * 200  # the trees on one path, not 20,000 rows a commit

    after = api.model_info(repo).sha
    assert after is not None and after != before
    now = _listing(api, repo, after)
    assert now.keys() == listed.keys()
    changed = {p for p in listed if listed[p] != now[p]}
    folder = target.rpartition("/")[0]
    assert changed == {target, *[f for f in listed if listed[f][0] == "RepoFolder" and target.startswith(f + "/")]}
    assert folder in changed and now[target][1] == 1
    assert _listing(api, repo, before) == listed  # the old commit lists as it did

    info = api.get_paths_info(repo, [target, folder, paths[0]], revision=before)
    assert {i.path: i.size for i in info if isinstance(i, RepoFile)} == {target: len(seed), paths[0]: len(seed)}
    cache = tmp_path / "cache"
    get = lambda path, rev=None: Path(  # noqa: E731
        hf_hub_download(repo, path, revision=rev, endpoint=hub.url, token=hub.token, cache_dir=cache)
    ).read_bytes()
    assert get(target) == b"J"  # the tenth byte
    assert get(target, before) == seed  # pinned to the commit before: its bytes then
    assert get(paths[0]) == get(paths[-1]) == seed
