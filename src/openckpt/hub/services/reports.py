"""A repo's openness (MOF class, OSAID) and its CycloneDX ML-BOM, from its default branch's files and card."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openckpt.format.manifest import Manifest
from openckpt.governance.bom import build_bom, is_weight_file
from openckpt.governance.openness import Openness, assess
from openckpt.hub.db.models import Account, Repo
from openckpt.hub.services import redirects
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.pages import load_manifest
from openckpt.hub.services.trees import FileEntry, read_tree
from openckpt.store.blobs import BlobStore

__all__ = ["repo_bom", "repo_openness"]


def _dataset_licenses(session: Session, card: dict[str, Any]) -> dict[str, str | None]:
    """Licenses of the datasets the card links that are public dataset repos of this hub."""
    names = card.get("datasets")
    names = [names] if isinstance(names, str) else [n for n in names or [] if isinstance(n, str)]
    found: dict[str, str | None] = {}
    for name in names[:50]:
        owner, _, repo_name = name.partition("/")
        if not repo_name:
            continue
        repo = session.scalar(
            select(Repo)
            .join(Account, Repo.owner_id == Account.id)
            .where(Repo.type == "dataset", Account.name == owner, Repo.name == repo_name, Repo.private.is_(False))
        )
        if repo is None and (moved := redirects.follow(session, "dataset", owner, repo_name)) is not None:
            repo = None if moved.private else moved  # a dataset renamed since the card named it
        if repo is not None and isinstance((repo.card_data or {}).get("license"), str):
            found[name] = repo.card_data["license"]
    return found


def _head_entries(session: Session, repo: Repo) -> tuple[str, dict[str, FileEntry]]:
    head = resolve_revision(session, repo, rev=repo.default_branch)
    return head.id, read_tree(session, head.tree_id)


def repo_openness(session: Session, repo: Repo) -> Openness:
    _, entries = _head_entries(session, repo)
    card = dict(repo.card_data or {})
    return assess(list(entries), card, dataset_licenses=_dataset_licenses(session, card))


def repo_bom(session: Session, store: BlobStore, *, repo: Repo, tool_version: str = "") -> dict[str, Any]:
    commit_id, entries = _head_entries(session, repo)
    manifest: Manifest | None = None
    if (entry := entries.get("openckpt.json")) is not None:
        manifest = load_manifest(store, entry).manifest
    weights = {path: e.sha256 for path, e in entries.items() if is_weight_file(path)}
    return build_bom(
        repo.repo_id,
        weights=weights,
        card=dict(repo.card_data or {}),
        manifest=manifest,
        version=commit_id,
        tool_version=tool_version,
    )
