"""Pages to find things: home, search, the model and dataset lists, and user and organisation pages."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from openckpt.errors import RepoNotFoundError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Repo
from openckpt.hub.deps import DbDep, ViewerDep
from openckpt.hub.routes.ui.common import PageRoute, page, page_number
from openckpt.hub.services import pages
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.repos import ListQuery, list_repos

router = APIRouter(route_class=PageRoute, include_in_schema=False)
"""Fixed paths; :data:`accounts_router` (``/{name}``) must be included after every other page."""
accounts_router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 30
SORTS = {
    "lastModified": "Recently updated",
    "downloads": "Most downloads",
    "likes": "Most likes",
    "createdAt": "Recently created",
}
_HIDDEN_TAG_PREFIXES = ("license:", "base_model:")


def _recent(
    db: Database, viewer: Principal | None, repo_type: str, limit: int, search: str | None = None
) -> list[Repo]:
    query = ListQuery(sort="lastModified", limit=limit, search=search)
    with db.read() as session:
        return list_repos(session, viewer, repo_type=repo_type, query=query)


@router.get("/")
def home(request: Request, db: DbDep, viewer: ViewerDep) -> Response:
    models, datasets = _recent(db, viewer, "model", 8), _recent(db, viewer, "dataset", 6)
    return page(request, "home.html", {"models": models, "datasets": datasets})


@router.get("/search")
def search(request: Request, db: DbDep, viewer: ViewerDep) -> Response:
    text = request.query_params.get("q", "").strip()
    models = _recent(db, viewer, "model", 20, search=text) if text else []
    datasets = _recent(db, viewer, "dataset", 20, search=text) if text else []
    accounts = []
    if text:
        with db.read() as session:
            accounts = pages.search_accounts(session, text, limit=20)
    context = {"q": text, "models": models, "datasets": datasets, "accounts": accounts}
    return page(request, "search.html", context)


def _facets(repos: list[Repo]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(tags, libraries) with their counts, most common first."""
    libraries = Counter(r.library_name for r in repos if r.library_name)
    tags = Counter(t for r in repos for t in r.tags if t not in libraries and not t.startswith(_HIDDEN_TAG_PREFIXES))
    return tags.most_common(20), libraries.most_common(10)


def _linker(request: Request) -> Callable[..., str]:
    """``link(tag="x")``: this list's URL with some query parameters replaced (``None`` removes one)."""

    def link(**changes: str | int | None) -> str:
        params = {k: v for k, v in request.query_params.items() if k not in changes and k != "p"}
        params.update({k: str(v) for k, v in changes.items() if v is not None and v != ""})
        return f"{request.url.path}?{urlencode(params)}" if params else request.url.path

    return link


def _repo_list(request: Request, db: Database, viewer: Principal | None, repo_type: str) -> Response:
    q = request.query_params
    sort = q.get("sort") if q.get("sort") in SORTS else "lastModified"
    search, author = q.get("search", "").strip(), q.get("author", "").strip()
    tag, library = q.get("tag", "").strip(), q.get("library", "").strip()
    number = page_number(q.get("p"))
    query = ListQuery(
        search=search or None,
        author=author or None,
        filters=tuple(f for f in (tag, library) if f),
        sort=sort,
        limit=PAGE + 1,
        offset=(number - 1) * PAGE,
    )
    with db.read() as session:
        found = list_repos(session, viewer, repo_type=repo_type, query=query)
        tags, libraries = _facets(list_repos(session, viewer, repo_type=repo_type, query=ListQuery(limit=1000)))
    context = {
        "repo_type": repo_type,
        "repos": found[:PAGE],
        "more": len(found) > PAGE,
        "number": number,
        "sort": sort,
        "sorts": SORTS,
        "search": search,
        "author": author,
        "tag": tag,
        "library": library,
        "tags": tags,
        "libraries": libraries,
        "link": _linker(request),
    }
    return page(request, "list.html", context)


@router.get("/models")
def models(request: Request, db: DbDep, viewer: ViewerDep) -> Response:
    return _repo_list(request, db, viewer, "model")


@router.get("/datasets")
def datasets(request: Request, db: DbDep, viewer: ViewerDep) -> Response:
    return _repo_list(request, db, viewer, "dataset")


@accounts_router.get("/{name}")
def account(request: Request, db: DbDep, viewer: ViewerDep, name: str) -> Response:
    with db.read() as session:
        found = pages.find_account(session, name)
        if found is None:
            raise RepoNotFoundError(f"no account {name!r}")
        query = ListQuery(author=found.name, sort="lastModified", limit=500)
        context = {
            "account": found,
            "models": list_repos(session, viewer, repo_type="model", query=query),
            "datasets": list_repos(session, viewer, repo_type="dataset", query=query),
            "members": pages.members(session, found) if found.kind == "org" else [],
            "orgs": pages.memberships(session, found) if found.kind == "user" else [],
        }
        return page(request, "account.html", context)
