"""Writing trees (see ``trees.py``): a commit's changes applied along their paths, whole trees stored, files dropped
from every folder of a history; only the trees a new root reaches and the database lacks are stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError, EntryNotFoundError
from openckpt.hub.db.models import TreeItem
from openckpt.hub.services.trees import _DEPTH, _STORED, EMPTY, LEAF, FileEntry, _digit, _Row, _tree_id, _Trees

__all__ = ["FileChange", "apply_changes", "files_tree_id", "rewrite_files", "store_files", "write_tree"]


@dataclass(frozen=True)
class FileChange:
    """One operation of a commit: add/replace ``path`` with a stored blob, or delete a file or folder."""

    path: str
    kind: str  # "add" | "delete" | "delete_folder"
    sha256: str = ""
    size: int = 0
    git_oid: str = ""
    lfs: bool = False


def _row(e: FileEntry | FileChange) -> _Row:
    return _Row(None, e.sha256, e.git_oid, e.size, bool(e.lfs))


class _Builder(_Trees):
    """Trees read and made during one write: made trees are stored by :meth:`flush`, if the new root reaches them."""

    def __init__(self, session: Session | None) -> None:
        super().__init__(session)
        self.made: set[str] = set()

    def put(self, rows: dict[str, _Row]) -> str:
        if not rows:
            return EMPTY
        tree = _tree_id(rows)
        if tree not in self.nodes:
            self.nodes[tree] = rows
            self.made.add(tree)
        return tree

    def build(self, names: dict[str, _Row], depth: int = 0) -> tuple[str, int]:
        """The tree of a directory holding ``names`` (``depth`` digits into its buckets), and how many names."""
        if len(names) <= LEAF or depth >= _DEPTH:
            return self.put(names), len(names)
        groups: dict[str, dict[str, _Row]] = {}
        for name, row in names.items():
            groups.setdefault(_digit(name, depth), {})[name] = row
        buckets = {f"/{d}": _Row(self.build(g, depth + 1)[0], size=len(g)) for d, g in groups.items()}
        return self.put(buckets), len(names)

    def update(self, tree: str, changes: Mapping[str, _Row | None], depth: int = 0) -> tuple[str, int]:
        """The tree of the directory ``tree`` with ``changes`` (None: remove the name), and its number of names."""
        rows = self.rows(tree)
        if not any(n.startswith("/") for n in rows):
            names = dict(rows)
            for name, row in changes.items():
                if row is None:
                    names.pop(name, None)
                else:
                    names[name] = row
            return self.build(names, depth)
        groups: dict[str, dict[str, _Row | None]] = {}
        for name, row in changes.items():
            groups.setdefault(_digit(name, depth), {})[name] = row
        buckets = dict(rows)
        for digit, some in groups.items():
            old = buckets.get(f"/{digit}")
            sub, n = self.update(EMPTY if old is None or old.subtree is None else old.subtree, some, depth + 1)
            if n:
                buckets[f"/{digit}"] = _Row(sub, size=n)
            else:
                buckets.pop(f"/{digit}", None)
        total = sum(r.size for r in buckets.values())
        if total <= LEAF:  # small again: one tree, as build would make it
            names = {}
            for row in buckets.values():
                names.update(self.names(row.subtree or EMPTY))
            return self.build(names, depth)
        return self.put(buckets), total

    def first_file(self, tree: str, prefix: str) -> str:
        """The path of some file under the folder ``prefix`` whose tree is ``tree``."""
        name = min(self.rows(tree))
        row = self.rows(tree)[name]
        if row.subtree is None:
            return prefix + name
        return self.first_file(row.subtree, prefix if name.startswith("/") else f"{prefix}{name}/")

    def flush(self, root: str) -> None:
        """Store the trees made that ``root`` reaches and the database does not hold yet."""
        assert self.session is not None
        fresh, todo = [], [root]
        while todo:
            tree = todo.pop()
            if tree in self.made:
                self.made.discard(tree)
                fresh.append(tree)
                todo.extend(r.subtree for r in self.nodes[tree].values() if r.subtree is not None)
        stored: set[str] = set()
        for i in range(0, len(fresh), 500):
            stored.update(self.session.scalars(_STORED, {"trees": fresh[i : i + 500]}))
        rows = [
            {
                "tree_id": t,
                "name": n,
                "subtree": r.subtree,
                "sha256": r.sha256,
                "git_oid": r.git_oid,
                "size": r.size,
                "lfs": r.lfs,
            }
            for t in fresh
            if t not in stored
            for n, r in self.nodes[t].items()
        ]
        if rows:
            self.session.execute(insert(TreeItem), rows)


class _Dir:
    """A directory being edited: its stored tree ``base``, and what changes (None: removed) over it."""

    __slots__ = ("base", "dirs", "files")

    def __init__(self, base: str) -> None:
        self.base = base
        self.files: dict[str, _Row | None] = {}
        self.dirs: dict[str, _Dir | None] = {}


class _Edit:
    def __init__(self, trees: _Builder, root: str) -> None:
        self.trees = trees
        self.root = _Dir(root)

    def stored(self, d: _Dir, name: str) -> _Row | None:
        return None if d.base == EMPTY else self.trees.get(d.base, name)

    def child(self, d: _Dir, name: str, *, create: bool) -> _Dir | None:
        if name in d.dirs:
            c = d.dirs[name]
            if c is None and create:
                c = d.dirs[name] = _Dir(EMPTY)
            return c
        row = self.stored(d, name)
        if row is not None and row.subtree is not None:
            c = _Dir(row.subtree)
        elif create:
            c = _Dir(EMPTY)
        else:
            return None
        d.dirs[name] = c
        return c

    def folder(self, parts: Sequence[str], *, create: bool) -> _Dir | None:
        d: _Dir | None = self.root
        for name in parts:
            if d is None:
                return None
            d = self.child(d, name, create=create)
        return d

    def has_file(self, d: _Dir, name: str) -> bool:
        if name in d.files:
            return d.files[name] is not None
        row = self.stored(d, name)
        return row is not None and row.subtree is None

    def nonempty(self, d: _Dir) -> bool:
        if any(f is not None for f in d.files.values()):
            return True
        if any(c is not None and self.nonempty(c) for c in d.dirs.values()):
            return True
        if d.base == EMPTY:
            return False
        if self.trees.count(d.base) > len(d.files.keys() | d.dirs.keys()):
            return True
        return any(n not in (d.files if r.subtree is None else d.dirs) for n, r in self.trees.names(d.base).items())

    def apply(self, change: FileChange) -> None:
        if change.kind == "add":
            *parents, name = change.path.split("/")
            d = self.folder(parents, create=True)
            assert d is not None
            d.files[name] = _row(change)
        elif change.kind == "delete":
            *parents, name = change.path.split("/")
            d = self.folder(parents, create=False)
            if d is None or not self.has_file(d, name):
                raise EntryNotFoundError(f"A file with this name doesn't exist: {change.path}")
            d.files[name] = None
        else:
            path = change.path.rstrip("/")
            *parents, name = path.split("/")
            d = self.folder(parents, create=False) if path else None
            c = self.child(d, name, create=False) if d is not None else None
            if d is None or c is None or not self.nonempty(c):
                raise EntryNotFoundError(f"A folder with this name doesn't exist: {change.path}")
            d.dirs[name] = None

    def finish(self, d: _Dir, prefix: str = "") -> tuple[str, int]:
        """The tree of ``d`` with its changes (stored or not), and its number of names."""
        if not d.files and not d.dirs:
            return d.base, self.trees.count(d.base)
        changes: dict[str, _Row | None] = {}
        for name in sorted(d.files.keys() | d.dirs.keys()):
            stored = self.stored(d, name)
            file = d.files.get(name, stored if stored and stored.subtree is None else None)
            sub = None
            if name in d.dirs:
                c = d.dirs[name]
                if c is not None:
                    tree, n = self.finish(c, f"{prefix}{name}/")
                    sub = tree if n else None
            elif stored is not None and stored.subtree is not None:
                sub = stored.subtree
            if file is not None and sub is not None:
                below = self.trees.first_file(sub, f"{prefix}{name}/")
                raise BadRequestError(f"{prefix + name!r} is a file, so {below!r} cannot be created under it")
            changes[name] = file if file is not None else _Row(sub) if sub is not None else None
        return self.trees.update(d.base, changes)


def write_tree(session: Session, base: str, changes: Sequence[FileChange], *, store: bool = True) -> str:
    """The root tree of ``base`` with ``changes`` applied in order, storing the trees it adds (unless not
    ``store``). Deleting what isn't there is an :class:`EntryNotFoundError`, a file where a folder is (or under a
    file) a :class:`BadRequestError`. Reads and writes only the trees on the paths of the changes."""
    trees = _Builder(session)
    edit = _Edit(trees, base)
    for change in changes:
        edit.apply(change)
    root = edit.finish(edit.root)[0]
    if store:
        trees.flush(root)
    return root


def _adds(files: Iterable[FileEntry]) -> list[FileChange]:
    return [FileChange(f.path, "add", f.sha256, f.size, f.git_oid, f.lfs) for f in files]


def store_files(session: Session, files: Iterable[FileEntry]) -> str:
    """Store the tree of exactly ``files`` (the trees the database does not hold yet); return its root id."""
    return write_tree(session, EMPTY, _adds(files))


def files_tree_id(files: Iterable[FileEntry]) -> str:
    """The id the root tree of exactly ``files`` has, without storing anything."""
    trees = _Builder(None)
    edit = _Edit(trees, EMPTY)
    for change in _adds(files):
        edit.apply(change)
    return edit.finish(edit.root)[0]


def rewrite_files(session: Session, root: str, keep: Callable[[FileEntry], bool], memo: dict[str, str]) -> str:
    """The root tree of ``root`` without the files ``keep`` refuses (it sees their names, not their paths, as a tree
    may be at several paths), storing the trees it adds; ``memo`` maps trees already rewritten, across calls."""
    trees = _Builder(session)

    def folder(tree: str) -> str:
        if tree not in memo:
            changes: dict[str, _Row | None] = {}
            for name, row in trees.names(tree).items():
                if row.subtree is None:
                    if not keep(FileEntry(name, row.sha256, row.git_oid, row.size, row.lfs)):
                        changes[name] = None
                elif (sub := folder(row.subtree)) != row.subtree:
                    changes[name] = None if sub == EMPTY else _Row(sub)
            memo[tree] = trees.update(tree, changes)[0] if changes else tree
        return memo[tree]

    new = folder(root)
    trees.flush(new)
    return new


def apply_changes(files: Mapping[str, FileEntry], changes: Sequence[FileChange]) -> dict[str, FileEntry]:
    """``files`` (by path) with ``changes`` applied, checked as :func:`write_tree` checks them."""
    new = dict(files)
    for change in changes:
        if change.kind == "add":
            new[change.path] = FileEntry(change.path, change.sha256, change.git_oid, change.size, change.lfs)
        elif change.kind == "delete":
            if new.pop(change.path, None) is None:
                raise EntryNotFoundError(f"A file with this name doesn't exist: {change.path}")
        else:
            prefix = change.path.rstrip("/") + "/"
            doomed = [p for p in new if p.startswith(prefix)]
            if not doomed:
                raise EntryNotFoundError(f"A folder with this name doesn't exist: {change.path}")
            for p in doomed:
                del new[p]
    for path in sorted(new):  # a file may not also be a folder
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in new:
                raise BadRequestError(f"{'/'.join(parts[:i])!r} is a file, so {path!r} cannot be created under it")
    return new
