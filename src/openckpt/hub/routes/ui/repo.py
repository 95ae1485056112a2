"""Repo pages: overview (card, files, openckpt manifest), folders, files, commit history and refs (a commit's page,
with its diffs, is in ``changes.py``).

Models live at ``/{owner}/{name}``, datasets at ``/datasets/{owner}/{name}``; a revision is ``?rev=`` on the
overview and a path segment elsewhere (``%2F`` inside it, as the API expects). API routes are included first, so
``/{owner}/{name}/resolve/...`` and the LFS endpoints are never shadowed; no account may take the first segment of
another page (``api``, ``datasets``...: ``names.RESERVED_ACCOUNT_NAMES``), so such a path finds no repo here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from openckpt.errors import EntryNotFoundError
from openckpt.evaluate.card import backdoor_results, bias_results
from openckpt.hub.context import Hub, raw_tail, repo_id_of
from openckpt.hub.db.models import Commit, Repo
from openckpt.hub.deps import HubDep
from openckpt.hub.routes.ui.access import gate_context
from openckpt.hub.routes.ui.common import PageRoute, page, page_number, repo_url, viewer_of
from openckpt.hub.routes.ui.security import trust_context
from openckpt.hub.services import access, diffs, gate, governance, pages, provenance, reports
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.render import render_card, render_markdown
from openckpt.hub.services.repos import find_repo
from openckpt.hub.services.trees import file_at, read_tree

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MAX_README = 1 << 20
MAX_PREVIEW = 512 << 10
COMMITS_PAGE = 50


def _repo(session: Session, request: Request, repo_type: str) -> Repo:
    owner, name = request.path_params["owner"], request.path_params["name"]
    return find_repo(session, viewer_of(request), repo_type=repo_type, repo_id=repo_id_of(owner, name))


def _header(
    session: Session, repo: Repo, rev: str, commit: Commit, tab: str, rev_link: Callable[[str], str]
) -> dict[str, Any]:
    """What the header of every repo page shows: name, revision switcher, tabs."""
    branches, tags = pages.list_refs(session, repo)
    return {
        "repo": repo,
        "rev": rev,
        "commit": commit,
        "tab": tab,
        "base": repo_url(repo),
        "rev_link": rev_link,
        "branches": branches,
        "tags": tags,
        "kind_label": repo.type.capitalize(),
    }


def _rev_and_path(request: Request, repo_type: str) -> tuple[str, str]:
    """Revision (empty for the repo's default branch) and path after ``/{owner}/{name}/<view>/`` in the raw URL
    (revisions may hold ``%2F``)."""
    tail = raw_tail(request, 4 if repo_type == "dataset" else 3)
    rev = tail[0] if tail and tail[0] else ""
    return rev, "/".join(p for p in tail[1:] if p)


def overview(request: Request, hub: Hub, repo_type: str) -> Response:
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        rev = request.query_params.get("rev") or repo.default_branch
        commit = resolve_revision(session, repo, rev=rev)
        entries = read_tree(session, commit.tree_id)
        base = repo_url(repo)
        card = manifest = None
        if (readme := entries.get("README.md")) is not None:
            text = pages.read_text(hub.store, readme, limit=MAX_README)
            if text is not None:
                card = render_card(text, file_base=f"{base}/resolve/{commit.id}")
        if (entry := entries.get("openckpt.json")) is not None:
            manifest = pages.load_manifest(hub.store, entry)
        recent, _ = pages.commit_history(session, commit, offset=0, limit=5)
        context = {
            **_header(session, repo, rev, commit, "card", lambda r: f"{base}?rev={quote(r, safe='')}"),
            "card": card,
            "panel": manifest,
            "listing": pages.folder_listing(entries, ""),
            "recent": recent,
            "file_count": len(entries),
            "total_size": sum(e.size for e in entries.values()),
            "endpoint": hub.settings.public_url,
            "access_gate": gate_context(session, request, repo),
            "openness": reports.repo_openness(session, repo) if repo.type == "model" else None,
            "trust": trust_context(session, request, repo, commit, entries),
            "model_tree": governance.model_tree(session, viewer_of(request), repo=repo)
            if repo.type == "model"
            else None,
            "provenance": provenance.compact(provenance.cached(hub.settings, commit.id)),
            "bias": bias_results(card.metadata) if card is not None else [],
            "backdoor": backdoor_results(card.metadata) if card is not None else [],
            "weights": diffs.weights_summary(hub.store, entries),
            "results": diffs.model_index_rows(card.metadata) if card is not None else [],
        }
        return page(request, "repo.html", context)


def tree(request: Request, hub: Hub, repo_type: str) -> Response:
    rev, path = _rev_and_path(request, repo_type)
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        rev = rev or repo.default_branch
        commit = resolve_revision(session, repo, rev=rev)
        entries = read_tree(session, commit.tree_id, prefix=path)  # the folder's files only
        listing = pages.folder_listing(entries, path)
        if listing is None:
            raise EntryNotFoundError(f"no folder {path!r} at {rev}")
        base = repo_url(repo)
        link = lambda r: f"{base}/tree/{quote(r, safe='')}/{quote(path)}".rstrip("/")  # noqa: E731
        context = {
            **_header(session, repo, rev, commit, "files", link),
            "listing": listing,
            "path": path,
            "scans": gate.statuses(session, hub.settings, repo_id=repo.id, entries=entries.values()),
            "access_gate": gate_context(session, request, repo),
        }
        return page(request, "repo_tree.html", context)


def blob(request: Request, hub: Hub, repo_type: str) -> Response:
    rev, path = _rev_and_path(request, repo_type)
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        rev = rev or repo.default_branch
        commit = resolve_revision(session, repo, rev=rev)
        entry = file_at(session, commit.tree_id, path=path)
        if entry is None:
            raise EntryNotFoundError(f"no file {path!r} at {rev}")
        access.check_download(session, viewer_of(request), repo=repo, path=path)
        base = repo_url(repo)
        text = pages.read_text(hub.store, entry, limit=MAX_PREVIEW)
        rendered = None
        if text is not None and path.lower().endswith(".md"):
            folder = path.rpartition("/")[0]
            rendered = render_markdown(text, file_base=f"{base}/resolve/{commit.id}", folder=folder)
        link = lambda r: f"{base}/blob/{quote(r, safe='')}/{quote(path)}"  # noqa: E731
        context = {
            **_header(session, repo, rev, commit, "files", link),
            "entry": entry,
            "path": path,
            "text": text,
            "rendered": rendered,
            "preview_limit": MAX_PREVIEW,
        }
        return page(request, "repo_blob.html", context)


def commits(request: Request, hub: Hub, repo_type: str) -> Response:
    rev, _ = _rev_and_path(request, repo_type)
    number = page_number(request.query_params.get("p"))
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        rev = rev or repo.default_branch
        commit = resolve_revision(session, repo, rev=rev)
        history, more = pages.commit_history(session, commit, offset=(number - 1) * COMMITS_PAGE, limit=COMMITS_PAGE)
        base = repo_url(repo)
        link = lambda r: f"{base}/commits/{quote(r, safe='')}"  # noqa: E731
        context = {
            **_header(session, repo, rev, commit, "commits", link),
            "history": history,
            "more": more,
            "number": number,
        }
        return page(request, "repo_commits.html", context)


def refs(request: Request, hub: Hub, repo_type: str) -> Response:
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        commit = resolve_revision(session, repo, rev=repo.default_branch)
        base = repo_url(repo)
        link = lambda r: f"{base}?rev={quote(r, safe='')}"  # noqa: E731
        context = _header(session, repo, repo.default_branch, commit, "refs", link)
        return page(request, "repo_refs.html", context)


def _endpoint(view: Callable[[Request, Hub, str], Response], repo_type: str) -> Callable[[Request, Hub], Response]:
    def endpoint(request: Request, hub: HubDep) -> Response:
        return view(request, hub, repo_type)

    endpoint.__name__ = f"{view.__name__}_{repo_type}"
    return endpoint


_VIEWS: list[tuple[str, Callable[[Request, Hub, str], Response]]] = [
    ("", overview),
    ("/tree", tree),
    ("/tree/{rest:path}", tree),
    ("/blob/{rest:path}", blob),
    ("/commits", commits),
    ("/commits/{rest:path}", commits),
    ("/refs", refs),
]
for _prefix, _type in (("/datasets", "dataset"), ("", "model")):  # datasets first: their paths are longer
    for _suffix, _view in _VIEWS:
        router.add_api_route(f"{_prefix}/{{owner}}/{{name}}{_suffix}", _endpoint(_view, _type), methods=["GET"])
