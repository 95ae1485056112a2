"""Create, list and delete repos on a hub through huggingface_hub."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from openckpt.client.api import hf_api

__all__ = ["RepoSummary", "RepoType", "create_repo", "delete_repo", "list_repos", "similar_repos"]

RepoType = Literal["model", "dataset", "space"]


@dataclass(frozen=True)
class RepoSummary:
    repo_id: str
    private: bool
    last_modified: datetime | None
    downloads: int


def create_repo(
    repo_id: str,
    *,
    repo_type: RepoType = "model",
    private: bool = False,
    exist_ok: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> str:
    """Create ``repo_id`` (``name`` alone means the caller's namespace); return its URL."""
    api = hf_api(endpoint, token)
    return str(api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=exist_ok))


def list_repos(
    *,
    repo_type: RepoType = "model",
    author: str | None = None,
    search: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> list[RepoSummary]:
    """Repos the caller can see, optionally of one ``author`` or whose name contains ``search``."""
    api = hf_api(endpoint, token)
    infos: Iterable[Any]
    if repo_type == "model":
        infos = api.list_models(author=author, search=search)
    elif repo_type == "dataset":
        infos = api.list_datasets(author=author, search=search)
    else:
        infos = api.list_spaces(author=author, search=search)
    return [
        RepoSummary(i.id, bool(i.private), getattr(i, "last_modified", None), getattr(i, "downloads", None) or 0)
        for i in infos
    ]


def delete_repo(
    repo_id: str, *, repo_type: RepoType = "model", endpoint: str | None = None, token: str | None = None
) -> None:
    """Delete ``repo_id`` and all its revisions."""
    hf_api(endpoint, token).delete_repo(repo_id, repo_type=repo_type)


def similar_repos(
    repo_id: str,
    *,
    repo_type: RepoType = "model",
    endpoint: str | None = None,
    token: str | None = None,
    limit: int = 3,
) -> list[str]:
    """Repo ids the caller can see that look like ``repo_id`` (a typo'd name), closest first.

    Names are compared without their namespace, first among the namespace's repos; if none is close (or the
    namespace itself is mistyped), among repos whose name contains the first letters of the name, in any namespace.
    """
    namespace, _, name = repo_id.rpartition("/")
    close: list[str] = []
    if namespace:  # names compared without their namespace: a long shared prefix must not make them alike
        listed = list_repos(repo_type=repo_type, author=namespace, endpoint=endpoint, token=token)
        names = {r.repo_id.rpartition("/")[2]: r.repo_id for r in listed}
        close = [names[n] for n in difflib.get_close_matches(name, list(names), n=limit, cutoff=0.75)]
    if not close:
        found = list_repos(repo_type=repo_type, search=name[:3] or None, endpoint=endpoint, token=token)
        ranked = sorted(found, key=lambda r: -difflib.SequenceMatcher(None, repo_id, r.repo_id).ratio())
        kept = set(
            difflib.get_close_matches(name, [r.repo_id.rpartition("/")[2] for r in ranked], n=limit, cutoff=0.75)
        )
        close = [r.repo_id for r in ranked if r.repo_id.rpartition("/")[2] in kept][:limit]
    return [c for c in close if c != repo_id]
