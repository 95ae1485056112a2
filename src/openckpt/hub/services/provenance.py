"""Provenance on the hub: compare a model's weights with the bases it declares that this hub holds.

After a commit to a model's default branch that names a base held here (a ``lineage_edges`` row with a local base),
:func:`verify_later` runs :func:`openckpt.governance.provenance.verify_lineage` in one background thread and keeps
the verdict by commit id under ``<data_dir>/provenance/`` (one JSON file, written atomically); :func:`verdict` reads
it back, computing it first if no server did yet. The files compared are copied out of the store into a temporary
directory (weights, configs and cards only). A base counts only if every reader of the model could read it: public
bases, and private ones of the model's owner; others are ``unverifiable`` ("private"), so a verdict tells nothing
about repos its readers cannot see. A repo whose claim is ``not_derived`` is marked on its page, never hidden.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from openckpt.errors import OpenckptError, RepoNotFoundError, RevisionNotFoundError
from openckpt.fsutil import atomic_write
from openckpt.governance.lineage import extract_edges
from openckpt.governance.provenance import Unavailable, verify_lineage
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import LineageEdge, Repo
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import resolve_revision
from openckpt.hub.services.governance import local_repo
from openckpt.hub.services.repos import find_repo
from openckpt.hub.services.trees import FileEntry, read_tree
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = [
    "MAX_BYTES",
    "PATTERNS",
    "cached",
    "compact",
    "revision_verdict",
    "verdict",
    "verify_later",
    "verify_revision",
]

log = logging.getLogger("openckpt.hub.provenance")
PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "README.md",
    "openckpt.json",
    "adapter_config.json",
)
"""The files a comparison reads."""
MAX_BYTES = 16 << 30
"""A model and its bases larger than this together are not compared on the hub (``unverifiable``: too large)."""
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openckpt-provenance")


def _path(settings: Settings, commit_id: str) -> Path:
    return settings.data_dir / "provenance" / f"{commit_id}.json"


def cached(settings: Settings, commit_id: str) -> dict[str, Any] | None:
    """The verdict kept for ``commit_id``, if a server computed it."""
    try:
        data = json.loads(_path(settings, commit_id).read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def compact(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A verdict without its per-tensor and per-module tables (for ``model_info`` and the repo page)."""
    if result is None:
        return None
    parents = [{k: v for k, v in p.items() if k not in ("tensors", "modules")} for p in result.get("parents", [])]
    return {**result, "parents": parents}


def _wanted(entries: dict[str, FileEntry]) -> list[FileEntry]:
    return [e for p, e in entries.items() if any(fnmatch.fnmatch(p, pattern) for pattern in PATTERNS)]


def _copy(store: BlobStore, files: list[FileEntry], directory: Path) -> Path:
    for entry in files:
        target = directory.joinpath(*entry.path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            for chunk in store.read(entry.sha256):
                f.write(chunk)
    return directory


def verify_revision(db: Database, store: BlobStore, settings: Settings, repo_id: int, commit_id: str) -> dict[str, Any]:
    """Compare the model at ``commit_id`` with its declared bases and keep the verdict (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="openckpt-provenance-") as scratch:
        with db.read() as session:
            repo = session.get(Repo, repo_id)
            if repo is None:
                raise RepoNotFoundError(f"no repo {repo_id}: it was deleted")
            entries = read_tree(session, resolve_revision(session, repo, rev=commit_id).tree_id)
            small = {
                e.path: b"".join(store.read(e.sha256))
                for e in entries.values()
                if e.path in ("README.md", "openckpt.json", "adapter_config.json") and e.size <= 1 << 20
            }
            edges = extract_edges(small, paths=list(entries))
            bases: dict[str, Path | Unavailable] = {}
            base_commits: dict[str, str] = {}
            copies: list[tuple[list[FileEntry], Path]] = [(_wanted(entries), Path(scratch) / "model")]
            for i, edge in enumerate(edges):
                base = local_repo(session, edge.base)
                if base is None:
                    bases[edge.base] = Unavailable("not on this hub")
                elif base.private and base.owner_id != repo.owner_id:
                    bases[edge.base] = Unavailable("the base is private")
                else:
                    try:
                        head = resolve_revision(session, base, rev=edge.revision or base.default_branch)
                    except RevisionNotFoundError:
                        bases[edge.base] = Unavailable("the base has no such revision")
                        continue
                    files, base_commits[edge.base] = _wanted(read_tree(session, head.tree_id)), head.id
                    copies.append((files, Path(scratch) / f"base{i}"))
                    bases[edge.base] = copies[-1][1]
            name = repo.repo_id
        if sum(e.size for files, _ in copies for e in files) > MAX_BYTES:
            bases = {b: Unavailable("too large to compare on this hub") for b in bases}
        else:
            for files, directory in copies:
                _copy(store, files, directory)
        try:
            result = verify_lineage(
                copies[0][1], bases, relation=edges[0].relation if edges else None, name=name
            ).to_dict()
        except (OpenckptError, OSError) as e:
            result = {
                "model": name,
                "relation": None,
                "verdict": "unverifiable",
                "reason": f"cannot read: {e}",
                "parents": [],
            }
    result.update(commit=commit_id, base_commits=base_commits, checked_at=datetime.now(UTC).isoformat())
    path = _path(settings, commit_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result).encode())
    return result


def verdict(db: Database, store: BlobStore, *, settings: Settings, repo_id: int, commit_id: str) -> dict[str, Any]:
    """The verdict of ``commit_id``: kept, else computed now."""
    return cached(settings, commit_id) or verify_revision(db, store, settings, repo_id, commit_id)


def revision_verdict(
    db: Database, store: BlobStore, *, settings: Settings, principal: Principal | None, repo_id: str, rev: str
) -> dict[str, Any]:
    """The verdict (:func:`verdict`) of revision ``rev`` of the model ``repo_id``, if the caller sees it."""
    with db.read() as session:
        repo = find_repo(session, principal, repo_type="model", repo_id=repo_id)
        repo_pk, commit_id = repo.id, resolve_revision(session, repo, rev=rev).id
    return verdict(db, store, settings=settings, repo_id=repo_pk, commit_id=commit_id)


def _run(db: Database, store: BlobStore, settings: Settings, repo_id: int, commit_id: str) -> None:
    try:
        verify_revision(db, store, settings, repo_id, commit_id)
    except Exception:
        log.exception("provenance check of commit %s failed", commit_id)


def verify_later(db: Database, store: BlobStore, *, settings: Settings, repo_id: int, commit_id: str) -> bool:
    """Queue the check of ``commit_id`` if its repo declares a base this hub holds; whether it was queued."""
    with db.read() as session:
        held = session.scalar(
            select(LineageEdge.base)
            .where(LineageEdge.repo_id == repo_id, LineageEdge.base_repo_id.is_not(None))
            .limit(1)
        )
    if held is None or cached(settings, commit_id) is not None:
        return False
    _POOL.submit(_run, db, store, settings, repo_id, commit_id)
    return True
