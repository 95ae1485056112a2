"""Which commit last changed a file or a folder: the ``lastCommit`` of expanded tree listings."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from openckpt.hub.db.models import Commit
from openckpt.hub.services.commits import commit_chain
from openckpt.hub.services.trees import FileEntry, Folder, lookup, read_folder

__all__ = ["MAX_DEPTH", "last_commits"]

MAX_DEPTH = 1000
"""How many commits back to look; paths unchanged for longer get no last commit (the client accepts none)."""


class _States:
    """What paths hold in commits' trees, reading per commit only the folders that hold the paths asked about."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.steps: dict[tuple[str, str], Any] = {}
        self.folders: dict[str, dict[str, str]] = {}

    def of(self, root: str, folder: str) -> tuple[str | None, dict[str, str]]:
        """(the tree of ``folder`` in the tree ``root``, what each of its children holds: a file's content id or a
        folder's tree id); (None, {}) if there is no such folder."""
        found = lookup(self.session, root, path=folder, cache=self.steps)
        if not isinstance(found, Folder):
            return None, {}
        if found.tree_id not in self.folders:
            files, folders = read_folder(self.session, found.tree_id, recursive=False)
            prefix = f"{folder}/" if folder else ""
            states = {prefix + p: _state(e) for p, e in files.items()}
            states.update((prefix + p, f.tree_id) for p, f in folders.items())
            self.folders[found.tree_id] = states
        return found.tree_id, self.folders[found.tree_id]


def _state(entry: FileEntry) -> str:
    return f"{entry.sha256}:{entry.size}:{entry.lfs}"


def last_commits(session: Session, head: Commit, *, paths: list[str]) -> dict[str, Commit]:
    """For each path (a file or a folder) of ``head``'s tree, the newest commit up to ``head`` that changed it."""
    chain = commit_chain(session, head, limit=MAX_DEPTH + 1)
    states = _States(session)
    groups: dict[str, list[str]] = {}
    for path in dict.fromkeys(paths):
        groups.setdefault(path.rpartition("/")[0], []).append(path)
    pending: dict[str, str | None] = {}
    trees: dict[str, str | None] = {}  # folder → its tree in the child of the step
    for folder, some in groups.items():
        trees[folder], held = states.of(head.tree_id, folder)
        pending.update((p, held.get(p)) for p in some)
    found: dict[str, Commit] = {}
    parents: list[Commit | None] = [*chain[1:], None]  # the first commit has none
    for child, parent in zip(chain[:MAX_DEPTH], parents, strict=False):
        if parent is None:  # the first commit made whatever is still pending
            found.update(dict.fromkeys(pending, child))
            break
        if parent.tree_id != child.tree_id:
            for folder, some in groups.items():
                waiting = [p for p in some if p in pending]
                if not waiting:
                    continue
                tree, held = states.of(parent.tree_id, folder)
                if tree is not None and tree == trees[folder]:
                    continue  # the folder is the same: nothing in it changed
                trees[folder] = tree
                for path in [p for p in waiting if held.get(p) != pending[p]]:
                    found[path] = child
                    del pending[path]
        if not pending:
            break
    return found
