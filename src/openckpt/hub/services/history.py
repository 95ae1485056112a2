"""Which commit last changed a file or a folder: the ``lastCommit`` of expanded tree listings."""

from __future__ import annotations

import bisect
import hashlib

from sqlalchemy.orm import Session

from openckpt.hub.db.models import Commit, TreeEntry
from openckpt.hub.services.commits import commit_chain, tree_entries

__all__ = ["MAX_DEPTH", "last_commits"]

MAX_DEPTH = 1000
"""How many commits back to look; paths unchanged for longer get no last commit (the client accepts none)."""


class _Tree:
    def __init__(self, entries: dict[str, TreeEntry]) -> None:
        self.entries = entries
        self.paths = sorted(entries)

    def state(self, path: str) -> str | None:
        """What ``path`` holds here: a file's content id, a digest of everything under a folder, or None."""
        if (entry := self.entries.get(path)) is not None:
            return f"{entry.sha256}:{entry.size}:{entry.lfs}"
        prefix = path + "/"
        lo = bisect.bisect_left(self.paths, prefix)
        hi = bisect.bisect_left(self.paths, path + chr(ord("/") + 1))
        if lo == hi:
            return None
        h = hashlib.sha1(usedforsecurity=False)
        for p in self.paths[lo:hi]:
            h.update(f"{p}\0{self.entries[p].sha256}\n".encode())
        return h.hexdigest()


def last_commits(session: Session, head: Commit, paths: list[str]) -> dict[str, Commit]:
    """For each path (a file or a folder) of ``head``'s tree, the newest commit up to ``head`` that changed it."""
    chain = commit_chain(session, head, limit=MAX_DEPTH + 1)
    trees: dict[str, _Tree] = {}

    def tree(commit: Commit) -> _Tree:
        if commit.tree_id not in trees:
            trees[commit.tree_id] = _Tree(tree_entries(session, commit.tree_id))
        return trees[commit.tree_id]

    found: dict[str, Commit] = {}
    pending = {p: tree(head).state(p) for p in paths}
    parents: list[Commit | None] = [*chain[1:], None]  # the first commit has none
    for child, parent in zip(chain[:MAX_DEPTH], parents, strict=False):
        if parent is None:  # the first commit made whatever is still pending
            found.update(dict.fromkeys(pending, child))
            break
        if parent.tree_id != child.tree_id:
            before = tree(parent)
            for path in [p for p, state in pending.items() if before.state(p) != state]:
                found[path] = child
                del pending[path]
        if not pending:
            break
    return found
