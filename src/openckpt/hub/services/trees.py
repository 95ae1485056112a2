"""Trees: a repo's directories as content-addressed objects, as git stores them.

A tree is one directory: a ``tree_items`` row per name, either a file (its blob's ``sha256``, ``git_oid``, ``size``,
``lfs``) or a folder (``subtree``, the id of the folder's tree). A commit names its root tree. An unchanged folder
keeps its id, so a commit that changes one file adds only the trees from the root down to that file's folder; every
other tree is shared with the commits before it (and with other repos).

A directory of more than :data:`LEAF` names is split into up to 16 buckets, as a hash array mapped trie: rows named
``/0`` … ``/f`` (names no file or folder can have) hold the tree of the names whose sha1 has that hex digit at the
bucket's depth, and count them in ``size``. The shape depends only on the names, so equal directories get equal ids,
and changing one name of a directory of *n* names rewrites about ``16·log16(n/LEAF) + LEAF`` rows, not *n*.

A tree's id is the sha1 of its sorted lines ``name\\0sha256\\0size\\0lfs`` (files), ``name/\\0tree`` (folders) and
``/x\\0tree`` (buckets): a directory of files only has the id the flat file list of the earlier schema had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import CTE, Select, String, Text, bindparam, case, cast, func, insert, literal_column, select
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError, EntryNotFoundError
from openckpt.hub.db.models import TreeItem

__all__ = [
    "EMPTY",
    "LEAF",
    "FileChange",
    "FileEntry",
    "changed_files",
    "Folder",
    "apply_changes",
    "file_at",
    "files_reached",
    "files_tree_id",
    "first_seen",
    "holders",
    "lookup",
    "read_folder",
    "read_tree",
    "reach",
    "rewrite_files",
    "store_files",
    "write_tree",
]

EMPTY = hashlib.sha1(b"", usedforsecurity=False).hexdigest()
"""The id of the tree of no files (it has no rows)."""
LEAF = 32
"""The most names a directory's tree (or a bucket of it) holds before it splits into buckets."""
_DEPTH = 40  # hex digits of a sha1: a bucket this deep never splits again


@dataclass(frozen=True)
class FileChange:
    """One operation of a commit: add/replace ``path`` with a stored blob, or delete a file or folder."""

    path: str
    kind: str  # "add" | "delete" | "delete_folder"
    sha256: str = ""
    size: int = 0
    git_oid: str = ""
    lfs: bool = False


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of a tree, by its full path."""

    path: str
    sha256: str
    git_oid: str
    size: int
    lfs: bool


@dataclass(frozen=True, slots=True)
class Folder:
    """A folder of a tree, by its full path (``""``: the root), and the id of its own tree."""

    path: str
    tree_id: str


class _Row(NamedTuple):
    subtree: str | None
    sha256: str = ""
    git_oid: str = ""
    size: int = 0
    lfs: bool = False


def _row(e: FileEntry | FileChange) -> _Row:
    return _Row(None, e.sha256, e.git_oid, e.size, bool(e.lfs))


def _digit(name: str, depth: int) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[depth]


def _tree_id(rows: Mapping[str, _Row]) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    for name in sorted(rows):
        r = rows[name]
        if r.subtree is None:
            h.update(f"{name}\0{r.sha256}\0{r.size}\0{int(r.lfs)}\n".encode())
        else:
            h.update(f"{name}{'' if name.startswith('/') else '/'}\0{r.subtree}\n".encode())
    return h.hexdigest()


# ---- statements, built once -------------------------------------------------------------------------------------

_T = TreeItem.__table__
_COLUMNS = (_T.c.name, _T.c.subtree, _T.c.sha256, _T.c.git_oid, _T.c.size, _T.c.lfs)
_NODE = select(*_COLUMNS).where(_T.c.tree_id == bindparam("tree"))
_LOOKUP = select(*_COLUMNS).where(_T.c.tree_id == bindparam("tree"), _T.c.name.in_([bindparam("name"),
                                                                                     bindparam("bucket")]))  # fmt: skip
_STORED = select(_T.c.tree_id).where(_T.c.tree_id.in_(bindparam("trees", expanding=True))).distinct()


def _is_bucket(name: Any) -> Any:
    return func.substr(name, 1, 1) == "/"


def _walk(*, recursive: bool) -> Select[Any]:
    """Rows (prefix, name, subtree, sha256, git_oid, size, lfs) of the tree ``:tree`` (whose path is ``:prefix``):
    its names, and the names of its folders' trees too if ``recursive``."""
    top = select(cast(bindparam("tree"), String(40)).label("id"), cast(bindparam("prefix"), Text).label("prefix"))
    walk = top.cte("walk", recursive=True)
    step = _T.alias("step")
    below = step.c.subtree.is_not(None) if recursive else step.c.subtree.is_not(None) & _is_bucket(step.c.name)
    prefix = case((_is_bucket(step.c.name), walk.c.prefix), else_=cast(walk.c.prefix + step.c.name + "/", Text))
    walk = walk.union_all(select(step.c.subtree, prefix).where(step.c.tree_id == walk.c.id, below))
    return select(walk.c.prefix, *_COLUMNS).select_from(_T).join(walk, _T.c.tree_id == walk.c.id)


_WALK_ALL = _walk(recursive=True)
_WALK_DIR = _walk(recursive=False)


# ---- reading ----------------------------------------------------------------------------------------------------


def _get(
    session: Session, tree: str, name: str, cache: dict[tuple[str, str], _Row | None] | None = None
) -> _Row | None:
    """The row of ``name`` in the directory whose tree is ``tree`` (through its buckets), or None."""
    if cache is not None:
        key = (tree, name)
        if key not in cache:
            cache[key] = _get(session, tree, name)
        return cache[key]
    depth = 0
    while depth < _DEPTH:
        bucket = "/" + _digit(name, depth)
        found = {r.name: r for r in session.execute(_LOOKUP, {"tree": tree, "name": name, "bucket": bucket})}
        if name in found:
            r = found[name]
            return _Row(r.subtree, r.sha256, r.git_oid, r.size, bool(r.lfs))
        if bucket not in found:
            return None
        tree, depth = found[bucket].subtree, depth + 1
    return None


def lookup(
    session: Session, root: str, path: str, *, cache: dict[tuple[str, str], Any] | None = None
) -> FileEntry | Folder | None:
    """The file or folder at ``path`` of the tree ``root`` (``""``: the root folder), reading only the trees on the
    way to it; None if there is none. ``cache`` (any dict, kept by the caller) spares reading a tree twice."""
    if not path:
        return Folder("", root)
    tree, parts = root, path.split("/")
    for i, name in enumerate(parts):
        row = _get(session, tree, name, cache)
        if row is None:
            return None
        if row.subtree is None:
            return FileEntry(path, row.sha256, row.git_oid, row.size, row.lfs) if i == len(parts) - 1 else None
        tree = row.subtree
    return Folder(path, tree)


def file_at(session: Session, root: str, path: str) -> FileEntry | None:
    """The file at ``path`` of the tree ``root``, or None (nothing, or a folder, is there)."""
    found = lookup(session, root, path)
    return found if isinstance(found, FileEntry) else None


def read_folder(
    session: Session, root: str, path: str = "", *, recursive: bool = True
) -> tuple[dict[str, FileEntry], dict[str, Folder]]:
    """The files and folders under the folder ``path`` of the tree ``root`` (its direct children unless
    ``recursive``), each by full path in code-point order; both empty if ``path`` is no folder."""
    tree = root
    if path:
        found = lookup(session, root, path)
        if not isinstance(found, Folder):
            return {}, {}
        tree = found.tree_id
    return _read(session, tree, f"{path}/" if path else "", recursive=recursive)


def _read(
    session: Session, tree: str, prefix: str, *, recursive: bool
) -> tuple[dict[str, FileEntry], dict[str, Folder]]:
    files: dict[str, FileEntry] = {}
    folders: dict[str, Folder] = {}
    stmt = _WALK_ALL if recursive else _WALK_DIR
    for at, name, subtree, sha256, git_oid, size, lfs in session.execute(stmt, {"tree": tree, "prefix": prefix}):
        if name.startswith("/"):
            continue
        full = at + name
        if subtree is None:
            files[full] = FileEntry(full, sha256, git_oid, size, bool(lfs))
        else:
            folders[full] = Folder(full, subtree)
    return dict(sorted(files.items())), dict(sorted(folders.items()))


def read_tree(session: Session, root: str, *, prefix: str = "", recursive: bool = True) -> dict[str, FileEntry]:
    """The files of the tree ``root`` (under the folder ``prefix``; only its own files unless ``recursive``) by
    full path, in code-point order of their paths."""
    return read_folder(session, root, prefix, recursive=recursive)[0]


def changed_files(session: Session, old: str, new: str) -> tuple[dict[str, FileEntry], dict[str, FileEntry]]:
    """The files of the trees ``old`` and ``new`` that are not the same file at the same path in both (by path, in
    code-point order), reading only the folders that differ."""
    trees = _Trees(session)
    before: dict[str, FileEntry] = {}
    after: dict[str, FileEntry] = {}

    def side(row: _Row | None, path: str, into: dict[str, FileEntry]) -> None:
        if row is None:
            return
        if row.subtree is None:
            into[path] = FileEntry(path, row.sha256, row.git_oid, row.size, row.lfs)
        else:
            into.update(_read(session, row.subtree, f"{path}/", recursive=True)[0])

    def compare(a: str, b: str, prefix: str) -> None:
        left, right = trees.names(a), trees.names(b)
        for name in left.keys() | right.keys():
            x, y = left.get(name), right.get(name)
            if x == y:
                continue
            if x is not None and y is not None and x.subtree is not None and y.subtree is not None:
                compare(x.subtree, y.subtree, f"{prefix}{name}/")
                continue
            side(x, prefix + name, before)
            side(y, prefix + name, after)

    if old != new:
        compare(old, new, "")
    return dict(sorted(before.items())), dict(sorted(after.items()))


# ---- queries over many trees (storage accounting, garbage collection, fsck) -------------------------------------


def reach(roots: Select[Any], *, distinct: bool = True) -> CTE:
    """The trees that ``roots`` (rows of ``key``, ``tree_id``: root trees, each with a key such as its repo) reach,
    with the key of the root: each (key, tree) once if ``distinct``, else once per way to reach it."""
    top = roots.cte("reach", recursive=True)
    step = _T.alias("reach_step")
    down = select(top.c.key, step.c.subtree).where(step.c.tree_id == top.c.tree_id, step.c.subtree.is_not(None))
    return top.union(down) if distinct else top.union_all(down)


def files_reached(roots: Select[Any], *, distinct: bool = True) -> Select[Any]:
    """Rows (key, sha256, size, lfs, name) of the files of the trees :func:`reach` finds."""
    found = reach(roots, distinct=distinct)
    return (
        select(found.c.key, _T.c.sha256, _T.c.size, _T.c.lfs, _T.c.name)
        .select_from(_T)
        .join(found, _T.c.tree_id == found.c.tree_id)
        .where(_T.c.subtree.is_(None))
    )


def first_seen(
    session: Session, roots: Sequence[str], within: Select[Any], *, lfs: bool = False
) -> list[list[FileEntry]]:
    """For each of ``roots`` in turn, its files (LFS files only if ``lfs``) in code-point order of their paths,
    leaving out the folders an earlier root holds too (their files were listed then). ``within`` selects (a column
    ``tree_id``) root trees among which ``roots`` are: the trees they reach are read in one query."""
    sub = within.subquery()
    found = reach(select(literal_column("0").label("key"), sub.c.tree_id.label("tree_id")))
    rows = select(_T.c.tree_id, *_COLUMNS).join(found, _T.c.tree_id == found.c.tree_id).distinct()
    if lfs:
        rows = rows.where(_T.c.subtree.is_not(None) | _T.c.lfs.is_(True))
    nodes: dict[str, list[tuple[str, _Row]]] = {}
    for tree, name, subtree, sha256, git_oid, size, is_lfs in session.execute(rows):
        nodes.setdefault(tree, []).append((name, _Row(subtree, sha256, git_oid, size, bool(is_lfs))))
    seen: set[str] = set()
    out: list[list[FileEntry]] = []
    for root in roots:
        files: list[FileEntry] = []
        walked: set[str] = set()
        todo = [(root, "")]
        while todo:
            tree, prefix = todo.pop()
            if tree in seen:
                continue
            walked.add(tree)
            for name, row in nodes.get(tree, ()):
                if row.subtree is None:
                    files.append(FileEntry(prefix + name, row.sha256, row.git_oid, row.size, row.lfs))
                else:
                    todo.append((row.subtree, prefix if name.startswith("/") else f"{prefix}{name}/"))
        seen |= walked
        out.append(sorted(files, key=lambda f: f.path))
    return out


def holders(sha256s: Any) -> CTE:
    """Every tree holding a file whose sha256 is among ``sha256s`` (a list or a query), directly or in a folder,
    with the file's path in it: columns tree_id, path, sha256, git_oid, size, lfs. Join ``tree_id`` to
    ``Commit.tree_id`` for the commits holding them."""
    base = select(_T.c.tree_id, cast(_T.c.name, Text).label("path"), _T.c.sha256, _T.c.git_oid, _T.c.size, _T.c.lfs)
    up = base.where(_T.c.subtree.is_(None), _T.c.sha256.in_(sha256s)).cte("holders", recursive=True)
    parent = _T.alias("holder")
    path = case((_is_bucket(parent.c.name), up.c.path), else_=cast(parent.c.name + "/" + up.c.path, Text))
    return up.union(
        select(parent.c.tree_id, path, up.c.sha256, up.c.git_oid, up.c.size, up.c.lfs).where(
            parent.c.subtree == up.c.tree_id
        )
    )


# ---- writing ----------------------------------------------------------------------------------------------------


class _Trees:
    """Trees read and made during one write: made trees are stored by :meth:`flush`, if the new root reaches them."""

    def __init__(self, session: Session | None) -> None:
        self.session = session
        self.nodes: dict[str, dict[str, _Row]] = {EMPTY: {}}
        self.made: set[str] = set()

    def rows(self, tree: str) -> dict[str, _Row]:
        if tree not in self.nodes:
            assert self.session is not None
            self.nodes[tree] = {r.name: _Row(r.subtree, r.sha256, r.git_oid, r.size, bool(r.lfs))
                                for r in self.session.execute(_NODE, {"tree": tree})}  # fmt: skip
        return self.nodes[tree]

    def put(self, rows: dict[str, _Row]) -> str:
        if not rows:
            return EMPTY
        tree = _tree_id(rows)
        if tree not in self.nodes:
            self.nodes[tree] = rows
            self.made.add(tree)
        return tree

    def get(self, tree: str, name: str, depth: int = 0) -> _Row | None:
        rows = self.rows(tree)
        if name in rows:
            return rows[name]
        bucket = rows.get("/" + _digit(name, depth)) if depth < _DEPTH else None
        return None if bucket is None or bucket.subtree is None else self.get(bucket.subtree, name, depth + 1)

    def count(self, tree: str) -> int:
        rows = self.rows(tree)
        return sum(r.size for r in rows.values()) if any(n.startswith("/") for n in rows) else len(rows)

    def names(self, tree: str) -> dict[str, _Row]:
        """Every name of the directory whose tree is ``tree``, through its buckets."""
        out: dict[str, _Row] = {}
        for name, row in self.rows(tree).items():
            if name.startswith("/") and row.subtree is not None:
                out.update(self.names(row.subtree))
            else:
                out[name] = row
        return out

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
            {"tree_id": t, "name": n, "subtree": r.subtree, "sha256": r.sha256, "git_oid": r.git_oid, "size": r.size,
             "lfs": r.lfs}
            for t in fresh if t not in stored for n, r in self.nodes[t].items()
        ]  # fmt: skip
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
    def __init__(self, trees: _Trees, root: str) -> None:
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
    trees = _Trees(session)
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
    trees = _Trees(None)
    edit = _Edit(trees, EMPTY)
    for change in _adds(files):
        edit.apply(change)
    return edit.finish(edit.root)[0]


def rewrite_files(session: Session, root: str, keep: Callable[[FileEntry], bool], memo: dict[str, str]) -> str:
    """The root tree of ``root`` without the files ``keep`` refuses (it sees their names, not their paths, as a tree
    may be at several paths), storing the trees it adds; ``memo`` maps trees already rewritten, across calls."""
    trees = _Trees(session)

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
