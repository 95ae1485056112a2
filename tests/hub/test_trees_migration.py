"""Migration 0014 turns the flat file lists of the earlier schema (``tree_entries``: every file of every commit) into
content-addressed directory trees, on SQLite and PostgreSQL: every commit keeps its id, lists the same files and
folders and resolves every file to the same bytes, pinned by its id; trees of root files keep their ids; repos that
shared a flat tree share its trees; downgrading gives the flat lists (and their ids) back."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from huggingface_hub import HfApi
from sqlalchemy import select

from openckpt.digest import git_blob_sha1, lfs_pointer
from openckpt.hub.db.engine import MIGRATIONS, Database
from openckpt.hub.db.models import Account, Blob, Commit, Ref, Repo
from openckpt.hub.services.commits import _commit_id, resolve_revision
from openckpt.hub.services.trees import EMPTY, FileEntry, Folder, file_at, lookup, read_folder, read_tree
from openckpt.store.local import LocalBlobStore
from tests.hubtools import Postgres, start_hub

Files = dict[str, FileEntry]
_FLAT = sa.table(
    "tree_entries",
    *(sa.column(c) for c in ("tree_id", "path", "sha256", "git_oid", "size", "lfs")),
)


@dataclass
class World:
    """What the old schema held: each commit's files, and its repo and flat tree id."""

    files: dict[str, Files]
    repo: dict[str, str]
    flat: dict[str, str]


def _migrate(db: Database, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.write_engine.connect() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)
        conn.commit()


def _flat_id(files: Files) -> str:
    """The id the earlier schema gave a tree: the sha1 of its sorted file lines."""
    h = hashlib.sha1(usedforsecurity=False)
    for path in sorted(files):
        e = files[path]
        h.update(f"{path}\0{e.sha256}\0{e.size}\0{int(e.lfs)}\n".encode())
    return h.hexdigest()


def _file(store: LocalBlobStore, path: str, version: int, *, lfs: bool = False) -> FileEntry:
    data = f"{path} v{version}\n".encode() * (40 if lfs else 1)
    writer = store.writer()
    writer.write(data)
    sha256 = writer.commit()
    oid = git_blob_sha1(lfs_pointer(sha256, len(data))) if lfs else git_blob_sha1(data)
    return FileEntry(path, sha256, oid, len(data), lfs)


@dataclass(frozen=True)
class _OldRepo:
    id: int


_OLD_REPOS = (
    sa.table(
        "repos",
        *(sa.column(c) for c in ("id", "type", "owner_id", "name", "private", "created_at", "last_modified")),
        *(sa.column(c) for c in ("downloads", "likes")),
        *(sa.column(c, sa.JSON) for c in ("card_data", "tags")),
    )
    .insert()
    .values(
        type="model",
        private=False,
        created_at=datetime(2026, 1, 1),
        last_modified=datetime(2026, 1, 1),
        downloads=0,
        likes=0,
        card_data={},
        tags=[],
    )
    .returning(sa.column("id"))
)
"""A repo row as the schema at 0013 has it (the ORM model has the columns of later revisions)."""


def _old_world(db: Database, store: LocalBlobStore) -> World:
    """Repos with histories, stored as the code before 0014 stored them (flat tree rows)."""
    world = World({}, {}, {})
    v1 = {p: _file(store, p, 1) for p in [".gitattributes", "README.md", "config.json"]}
    shard0 = {f"data/shard_0/f{i:02d}.txt": _file(store, f"data/shard_0/f{i:02d}.txt", 1) for i in range(45)}
    shard1 = {f"data/shard_1/f{i}.txt": _file(store, f"data/shard_1/f{i}.txt", 1) for i in range(3)}
    weights = {"model/sub/weights.bin": _file(store, "model/sub/weights.bin", 1, lfs=True)}
    nested = {**v1, **shard0, **shard1, **weights}
    changed = {**nested, "data/shard_1/f1.txt": _file(store, "data/shard_1/f1.txt", 2)}
    pruned = {p: e for p, e in changed.items() if not p.startswith("data/shard_0/")}
    histories = {
        ("alice", "flat"): [{".gitattributes": v1[".gitattributes"]}, {k: v1[k] for k in ("README.md", "config.json")}],
        ("alice", "nested"): [nested, changed, pruned, {}],  # the last deletes every file
        ("bob", "copy"): [nested],  # the same tree as alice/nested's first commit
    }  # fmt: skip
    at = datetime(2026, 1, 1)
    with db.write() as session:
        for files in [f for history in histories.values() for f in history]:
            for e in files.values():
                if session.get(Blob, e.sha256) is None:
                    session.add(Blob(sha256=e.sha256, size=e.size))
        owners = {name: Account(name=name, kind="user") for name in ("alice", "bob")}
        session.add_all(owners.values())
        session.flush()
        stored: set[str] = set()
        for (owner, name), history in histories.items():
            repo = _OldRepo(session.execute(_OLD_REPOS.values(owner_id=owners[owner].id, name=name)).scalar_one())
            parent: str | None = None
            for n, files in enumerate(history):
                tree = _flat_id(files)
                if tree not in stored:
                    stored.add(tree)
                    rows = [{"tree_id": tree, "path": p, "sha256": e.sha256, "git_oid": e.git_oid, "size": e.size,
                             "lfs": e.lfs} for p, e in files.items()]  # fmt: skip
                    if rows:
                        session.execute(_FLAT.insert(), rows)
                at += timedelta(minutes=1)
                commit = _commit_id(repo.id, parent, tree, owner, f"commit {n}", "", at)
                session.add(Commit(id=commit, repo_id=repo.id, parent_id=parent, tree_id=tree, title=f"commit {n}",
                                   message="", author=owner, created_at=at))  # fmt: skip
                world.files[commit], world.repo[commit], world.flat[commit] = files, f"{owner}/{name}", tree
                parent = commit
            session.add(Ref(repo_id=repo.id, kind="branch", name="main", commit_id=parent))
            if name == "nested":
                session.add(Ref(repo_id=repo.id, kind="tag", name="v1", commit_id=list(world.files)[-3]))
    return world


def _folders(files: Files) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    """An empty hub database at revision 0013 (before content trees), and a data dir for a hub on it."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    db = Database(url)
    _migrate(db, "0013")
    yield db, tmp_path / "data"
    db.dispose()


def test_flat_trees_become_content_trees_with_every_commit_as_before(old_database: tuple[Database, Path]) -> None:
    db, data = old_database
    store = LocalBlobStore(data / "store")
    world = _old_world(db, store)
    _migrate(db, "head")

    with db.read() as session:
        assert "tree_entries" not in sa.inspect(session.get_bind()).get_table_names()
        commits = {c.id: c for c in session.scalars(select(Commit))}
        assert commits.keys() == world.files.keys()  # no commit id changed
        roots: dict[str, str] = {}
        for commit_id, files in world.files.items():
            commit = commits[commit_id]
            roots[world.flat[commit_id]] = commit.tree_id
            repo = session.scalars(select(Repo).where(Repo.id == commit.repo_id)).one()
            assert resolve_revision(session, repo, rev=commit_id).id == commit_id
            assert read_tree(session, commit.tree_id) == files
            if "/" not in "".join(files):  # a tree of root files keeps its id
                assert commit.tree_id == world.flat[commit_id]
            assert read_folder(session, commit.tree_id)[1].keys() == _folders(files)
            for path, entry in files.items():
                assert file_at(session, commit.tree_id, path=path) == entry
            for folder in _folders(files):
                found = lookup(session, commit.tree_id, path=folder)
                assert isinstance(found, Folder)
                assert read_tree(session, found.tree_id) == {
                    p[len(folder) + 1 :]: FileEntry(p[len(folder) + 1 :], e.sha256, e.git_oid, e.size, e.lfs)
                    for p, e in files.items()
                    if p.startswith(folder + "/")
                }
        assert roots[_flat_id({})] == EMPTY
        assert len(set(roots.values())) == len(roots)  # one root per flat tree: alice/nested and bob/copy share one

    hub = start_hub(data, db.url)
    try:
        api = HfApi(endpoint=hub.url)
        for commit_id, files in world.files.items():
            repo = world.repo[commit_id]
            listed = {i.path for i in api.list_repo_tree(repo, recursive=True, revision=commit_id)}
            assert listed == files.keys() | _folders(files)
            for path, entry in files.items():
                r = httpx.get(f"{hub.url}/{repo}/resolve/{commit_id}/{path}", follow_redirects=True, timeout=60)
                assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == entry.sha256, path
                assert r.headers["x-repo-commit"] == commit_id
    finally:
        hub.stop()

    _migrate(db, "0013", down=True)
    with db.read() as session:
        commits = {c.id: c for c in session.scalars(select(Commit))}
        for commit_id, files in world.files.items():
            assert commits[commit_id].tree_id == world.flat[commit_id]
            rows = session.execute(select(_FLAT.c.path, _FLAT.c.sha256).where(_FLAT.c.tree_id == world.flat[commit_id]))
            assert {path: sha256 for path, sha256 in rows} == {p: e.sha256 for p, e in files.items()}
