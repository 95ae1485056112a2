"""A long first-parent chain, read by ``commit_chain`` (one recursive query): the API's commit pages, the web UI's
history and the ``lastCommit`` walk of expanded trees, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.orm import Session

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Commit, Repo
from openckpt.hub.services import history, pages, repos
from openckpt.hub.services.commits import FileChange, commit_chain, create_commit
from tests.hubtools import HubProcess

COMMITS = 120  # the initial commit, one adding a.txt, then empty commits: more than two pages of 50


@dataclass(frozen=True)
class Chain:
    repo: str
    ids: list[str]  # newest first, the initial commit last


@pytest.fixture(scope="module")
def chain(hub: HubProcess) -> Chain:
    token = hub.create_user("chainer")
    http = httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {token}"}, timeout=60)
    for name in ("long", "other"):
        assert http.post("/api/repos/create", json={"name": name}).status_code == 200
    db = Database(hub.database_url)
    try:
        with db.read() as session:
            repo_id = repos.find_repo(session, None, repo_type="model", repo_id="chainer/long").id
        add = FileChange("a.txt", "add", sha256="0" * 64, size=1, git_oid="0" * 40)
        ids = [create_commit(db, repo_id, "main", [add], title="add a.txt", author="chainer")[0]]
        ids += [create_commit(db, repo_id, "main", [], title=f"c{i}", author="chainer")[0] for i in range(COMMITS - 2)]
    finally:
        db.dispose()
    initial = http.get("/api/models/chainer/long/commits/main", params={"offset": COMMITS - 1}).json()
    return Chain("chainer/long", [*reversed(ids), initial[0]["id"]])


@pytest.fixture
def session(hub: HubProcess) -> Iterator[Session]:
    db = Database(hub.database_url)
    try:
        with db.read() as s:
            yield s
    finally:
        db.dispose()


def _head(session: Session, chain: Chain) -> tuple[Repo, Commit]:
    repo = repos.find_repo(session, None, repo_type="model", repo_id=chain.repo)
    head = session.get(Commit, chain.ids[0])
    assert head is not None
    return repo, head


def test_chain_returns_exactly_limit_commits_newest_first(session: Session, chain: Chain) -> None:
    _, head = _head(session, chain)
    for limit in (1, 2, 50, COMMITS - 1):
        assert [c.id for c in commit_chain(session, head, limit=limit)] == chain.ids[:limit]
    assert [c.id for c in commit_chain(session, head, limit=COMMITS + 5)] == chain.ids  # ends at the initial commit
    assert commit_chain(session, head, limit=0) == []
    middle = session.get(Commit, chain.ids[70])
    assert middle is not None
    assert [c.id for c in commit_chain(session, middle, limit=10**30)] == chain.ids[70:]


def test_chain_stays_in_its_repo(hub: HubProcess, chain: Chain) -> None:
    db = Database(hub.database_url)
    try:
        with db.read() as session:  # never committed: the stray commit is rolled back when the session closes
            other = repos.find_repo(session, None, repo_type="model", repo_id="chainer/other")
            stray = Commit(id="f" * 40, repo_id=other.id, parent_id=chain.ids[0], tree_id="0" * 40, title="stray",
                           author="chainer")  # fmt: skip
            session.add(stray)
            session.flush()
            assert [c.id for c in commit_chain(session, stray, limit=10)] == [stray.id]
    finally:
        db.dispose()


def test_api_pages_a_long_chain(hub: HubProcess, chain: Chain) -> None:
    url = f"{hub.url}/api/models/{chain.repo}/commits/main"
    got, links = [], []
    response = httpx.get(url)
    while True:
        assert response.status_code == 200, response.text
        got.append([c["id"] for c in response.json()])
        if "next" not in response.links:
            break
        links.append(response.links["next"]["url"])
        response = httpx.get(links[-1])
    assert got == [chain.ids[:50], chain.ids[50:100], chain.ids[100:]]
    assert [link.rsplit("offset=", 1)[1] for link in links] == ["50", "100"]
    far = httpx.get(url, params={"offset": str(10**30)})
    assert (far.status_code, far.json(), "next" in far.links) == (200, [], False)


def test_web_history_pages(session: Session, chain: Chain) -> None:
    _, head = _head(session, chain)

    def page(offset: int, limit: int) -> tuple[list[str], bool]:
        commits, more = pages.commit_history(session, head, offset=offset, limit=limit)
        return [c.id for c in commits], more

    assert page(0, 5) == (chain.ids[:5], True)
    assert page(50, 20) == (chain.ids[50:70], True)
    assert page(100, 20) == (chain.ids[100:], False)
    assert page(100, 25) == (chain.ids[100:], False)
    assert page(0, COMMITS - 1) == (chain.ids[:-1], True)
    assert page(COMMITS, 10) == ([], False)


@pytest.mark.parametrize(
    ("depth", "expected"),
    [(COMMITS, {"a.txt": -2, ".gitattributes": -1}), (COMMITS - 1, {"a.txt": -2}), (COMMITS - 2, {})],
)
def test_last_commits_look_back_max_depth_commits(
    session: Session, chain: Chain, monkeypatch: pytest.MonkeyPatch, depth: int, expected: dict[str, int]
) -> None:
    monkeypatch.setattr(history, "MAX_DEPTH", depth)
    _, head = _head(session, chain)
    found = history.last_commits(session, head, paths=["a.txt", ".gitattributes"])
    assert {path: c.id for path, c in found.items()} == {path: chain.ids[i] for path, i in expected.items()}
