"""Listing and paging: ``list_models`` by author, search and limit, and ``Link: rel="next"`` paging of repos,
commits and trees, followed by both client releases and checked on the raw API."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.hub.conftest import Client
from tests.hubtools import HubProcess

NAMES = ["m0", "m1", "m2", "m3", "m4", "history"]
COMMITS = 60  # more than the 50 commits of a page
MANY = 1001  # more than the 1000 entries of a tree page


@dataclass(frozen=True)
class Catalog:
    token: str
    history: str  # a repo with 1 + COMMITS + 1 commits and MANY + COMMITS + 1 files
    commits: list[str]  # its commit ids, newest first
    files: list[str]


def _ndjson(summary: str, files: dict[str, bytes]) -> bytes:
    lines = [{"key": "header", "value": {"summary": summary}}] + [
        {"key": "file", "value": {"path": p, "content": base64.b64encode(d).decode(), "encoding": "base64"}}
        for p, d in files.items()
    ]
    return "\n".join(json.dumps(line) for line in lines).encode()


@pytest.fixture(scope="module")
def catalog(hub: HubProcess) -> Catalog:
    token = hub.create_user("lister")
    http = httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {token}"}, timeout=60)
    for name in NAMES:
        assert http.post("/api/repos/create", json={"name": name}).status_code == 200
    commits = []
    for i in range(COMMITS):
        r = http.post("/api/models/lister/history/commit/main", content=_ndjson(f"c{i}", {f"c/{i:02d}.txt": b"%d" % i}))
        commits.append(r.json()["commitOid"])
    many = {f"many/f{i:04d}.txt": b"same bytes" for i in range(MANY)}
    r = http.post("/api/models/lister/history/commit/main", content=_ndjson("many", many))
    commits.append(r.json()["commitOid"])
    assert http.post("/api/models/lister/history/branch/dev%2Fx").status_code == 200
    initial = http.get("/api/models/lister/history/commits/main", params={"offset": COMMITS + 1}).json()
    files = [".gitattributes", *many, *(f"c/{i:02d}.txt" for i in range(COMMITS))]
    return Catalog(token, "lister/history", [*reversed(commits), initial[0]["id"]], sorted(files))


def test_clients_list_and_follow_pages(hub: HubProcess, catalog: Catalog, client: Client, tmp_path: Path) -> None:
    got = client.run("list_and_page", endpoint=hub.url, work=tmp_path, token=catalog.token, author="lister",
                     names=NAMES, history=catalog.history)  # fmt: skip
    assert got["commits"] == catalog.commits
    assert got["files"] == sorted([*catalog.files, "c", "many"])


def _follow(url: str, **params: str) -> tuple[list[list[dict[str, object]]], list[str]]:
    """Every page from ``url`` on, and the Link URLs followed."""
    pages, links = [], []
    response = httpx.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if "next" not in response.links:
            return pages, links
        links.append(response.links["next"]["url"])
        response = httpx.get(links[-1])


def test_link_paging_of_repos(hub: HubProcess, catalog: Catalog) -> None:
    pages, links = _follow(f"{hub.url}/api/models", author="lister", limit="4")
    assert [len(p) for p in pages] == [4, 2]  # ``limit`` is the page size, as on the Hub
    assert sorted(str(m["id"]) for p in pages for m in p) == sorted(f"lister/{n}" for n in NAMES)
    assert links[0].startswith(f"{hub.url}/api/models?") and "author=lister" in links[0]
    sorted_pages, _ = _follow(f"{hub.url}/api/models", author="lister", limit="1", sort="createdAt", direction="1")
    assert [p[0]["id"] for p in sorted_pages] == [f"lister/{n}" for n in NAMES]


def test_link_paging_keeps_revision_with_slash(hub: HubProcess, catalog: Catalog) -> None:
    pages, links = _follow(f"{hub.url}/api/models/lister/history/commits/dev%2Fx")
    assert [len(p) for p in pages] == [50, len(catalog.commits) - 50]
    assert [c["id"] for p in pages for c in p] == catalog.commits
    assert "/commits/dev%2Fx?" in links[0], links
    pages, links = _follow(f"{hub.url}/api/models/lister/history/tree/dev%2Fx/many")
    assert [len(p) for p in pages] == [1000, MANY - 1000] and "/tree/dev%2Fx/many?" in links[0]
    assert [e["path"] for p in pages for e in p] == [f"many/f{i:04d}.txt" for i in range(MANY)]


@pytest.mark.parametrize("query", ["limit=abc", "offset=-1", "offset=1.5", "limit=-3"])
def test_bad_paging_parameters(hub: HubProcess, catalog: Catalog, query: str) -> None:
    for path in ("/api/models", "/api/models/lister/history/commits/main", "/api/models/lister/history/tree/main"):
        r = httpx.get(f"{hub.url}{path}?{query}")
        name = query.split("=")[0]
        if path != "/api/models" and name == "limit":
            continue  # commits and trees page by offset only
        assert (r.status_code, r.headers["x-error-code"]) == (400, "BadRequest"), (path, r.text)
        assert name in r.json()["error"] and "non-negative integer" in r.json()["error"]


def test_sort_and_search(hub: HubProcess, catalog: Catalog) -> None:
    r = httpx.get(f"{hub.url}/api/models", params={"search": "lister/M", "sort": "lastModified"})
    assert [m["id"] for m in r.json()][-1] == "lister/m0" and len(r.json()) == 5  # search ignores case
    assert httpx.get(f"{hub.url}/api/models", params={"search": "lister/m_"}).json() == [], "no LIKE wildcards"
    bad = httpx.get(f"{hub.url}/api/models", params={"sort": "nonsense"})
    assert (bad.status_code, bad.headers["x-error-code"]) == (400, "BadRequest")


def test_expanded_tree_has_last_commits_in_pages_of_50(hub: HubProcess, catalog: Catalog) -> None:
    pages, _ = _follow(f"{hub.url}/api/models/lister/history/tree/main/c", expand="true")
    assert [len(p) for p in pages] == [50, COMMITS - 50]
    entries = [e for p in pages for e in p]
    # c/NN.txt was added by the commit NN: catalog.commits is newest first, "many" then c59 ... c0
    assert [e["lastCommit"]["id"] for e in entries] == [catalog.commits[COMMITS - i] for i in range(COMMITS)]
    assert entries[0]["lastCommit"]["title"] == "c0" and entries[0]["lastCommit"]["date"].endswith("Z")
    top = httpx.get(f"{hub.url}/api/models/lister/history/tree/main", params={"expand": "1"}).json()
    assert {e["path"]: e["lastCommit"]["title"] for e in top} == {".gitattributes": "initial commit", "c": "c59",
                                                                   "many": "many"}  # fmt: skip
