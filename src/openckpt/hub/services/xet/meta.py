"""What the Hub API tells clients about Xet-backed files: ``xetHash`` in listings and the ``/resolve`` headers that
send hf_xet to the CAS. Files the scanner withholds get neither, so that their downloads go through ``/resolve``,
where the gate refuses them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from openckpt.hub.db.models import Commit, XetSha256
from openckpt.hub.services import gate
from openckpt.hub.services.stored_files import xet_files
from openckpt.hub.services.trees import FileEntry, holders
from openckpt.hub.settings import Settings
from openckpt.protocol import REPO_TYPE_PLURAL

__all__ = ["add_xet_hashes", "may_reconstruct", "resolve_headers", "xet_hashes"]


_HELD = holders(bindparam("shas", expanding=True))  # up from the files to the root trees holding them
_REPO_FILES = (
    select(_HELD.c.path, _HELD.c.sha256, _HELD.c.git_oid, _HELD.c.size, _HELD.c.lfs)
    .join(Commit, Commit.tree_id == _HELD.c.tree_id)
    .where(Commit.repo_id == bindparam("repo"))
    .distinct()
    .limit(50)
)
"""Files (by path) of the repo ``:repo``'s commits whose sha256 is among ``:shas``."""


def xet_hashes(session: Session, settings: Settings, repo_id: int, entries: Iterable[FileEntry]) -> dict[str, str]:
    """Path → Xet file hash of the LFS files among ``entries`` that the CAS can serve and the gate lets through."""
    lfs = [e for e in entries if e.lfs]
    found = xet_files(session, [e.sha256 for e in lfs])
    backed = [e for e in lfs if e.sha256 in found]
    if not backed:
        return {}
    status = gate.statuses(session, settings, repo_id=repo_id, entries=backed)
    return {e.path: found[e.sha256][0] for e in backed if not status[e.path].withheld}


def add_xet_hashes(
    session: Session, settings: Settings, repo_id: int, entries: Mapping[str, FileEntry], items: list[dict[str, Any]]
) -> None:
    """Add ``xetHash`` to the file items (tree or paths-info JSON) of Xet-backed files."""
    listed = [entries[i["path"]] for i in items if i.get("type") == "file" and "lfs" in i and i["path"] in entries]
    hashes = xet_hashes(session, settings, repo_id, listed)
    for item in items:
        if item.get("path") in hashes and item.get("type") == "file":
            item["xetHash"] = hashes[item["path"]]


def may_reconstruct(session: Session, settings: Settings, repo: int, file_hash: str) -> bool:
    """Whether a CAS token of ``repo`` may read the file ``file_hash``: a file of one of the repo's commits that the
    gate does not withhold there, or one an upload to the repo registered and no commit holds yet."""
    usable = XetSha256.verified.is_(True) | (XetSha256.repo_id == repo)
    stmt = select(XetSha256.sha256, XetSha256.repo_id).where(XetSha256.file_hash == file_hash, usable)
    registered = list(session.execute(stmt).tuples())
    rows = session.execute(_REPO_FILES, {"shas": [s for s, _ in registered], "repo": repo})
    entries = [FileEntry(path, sha256, git_oid, size, bool(lfs)) for path, sha256, git_oid, size, lfs in rows]
    if entries:
        return any(not s.withheld for s in gate.statuses(session, settings, repo_id=repo, entries=entries).values())
    return any(owner == repo for _, owner in registered)


def resolve_headers(base: str, repo_type: str, repo_id: str, commit: str, xet_hash: str) -> dict[str, str]:
    """``X-Xet-Hash`` and the ``Link`` to the read-token route (pinned to the commit) of a Xet-backed file."""
    token_route = f"{base}/api/{REPO_TYPE_PLURAL[repo_type]}/{repo_id}/xet-read-token/{commit}"
    return {"X-Xet-Hash": xet_hash, "Link": f'<{token_route}>; rel="xet-auth"'}
