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
This module reads trees (one path, one folder, a whole tree, or many trees in one query); ``tree_writes.py`` makes
them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import CTE, Select, String, Text, bindparam, case, cast, func, literal_column, select
from sqlalchemy.orm import Session

from openckpt.hub.db.models import TreeItem

__all__ = [
    "EMPTY",
    "LEAF",
    "FileEntry",
    "changed_files",
    "Folder",
    "file_at",
    "files_reached",
    "first_seen",
    "holders",
    "lookup",
    "read_folder",
    "read_tree",
    "reach",
]

EMPTY = hashlib.sha1(b"", usedforsecurity=False).hexdigest()
"""The id of the tree of no files (it has no rows)."""
LEAF = 32
"""The most names a directory's tree (or a bucket of it) holds before it splits into buckets."""
_DEPTH = 40  # hex digits of a sha1: a bucket this deep never splits again


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
_LOOKUP = select(*_COLUMNS).where(
    _T.c.tree_id == bindparam("tree"), _T.c.name.in_([bindparam("name"), bindparam("bucket")])
)
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
    session: Session, root: str, *, path: str, cache: dict[tuple[str, str], Any] | None = None
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


def file_at(session: Session, root: str, *, path: str) -> FileEntry | None:
    """The file at ``path`` of the tree ``root``, or None (nothing, or a folder, is there)."""
    found = lookup(session, root, path=path)
    return found if isinstance(found, FileEntry) else None


def read_folder(
    session: Session, root: str, *, path: str = "", recursive: bool = True
) -> tuple[dict[str, FileEntry], dict[str, Folder]]:
    """The files and folders under the folder ``path`` of the tree ``root`` (its direct children unless
    ``recursive``), each by full path in code-point order; both empty if ``path`` is no folder."""
    tree = root
    if path:
        found = lookup(session, root, path=path)
        if not isinstance(found, Folder):
            return {}, {}
        tree = found.tree_id
    return _read(session, tree, f"{path}/" if path else "", recursive=recursive)


_CACHE: OrderedDict[tuple[str, str, bool], tuple[dict[str, FileEntry], dict[str, Folder]]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_FROM = 2000
"""Reads of at least this many files are kept (trees never change): the pages of a large listing read it once."""
CACHE_SIZE = 8


def _read(
    session: Session, tree: str, prefix: str, *, recursive: bool
) -> tuple[dict[str, FileEntry], dict[str, Folder]]:
    key = (tree, prefix, recursive)
    with _CACHE_LOCK:
        if (hit := _CACHE.get(key)) is not None:
            _CACHE.move_to_end(key)
            return dict(hit[0]), dict(hit[1])
    found = _walk_rows(session, tree, prefix, recursive=recursive)
    if len(found[0]) >= CACHE_FROM:
        with _CACHE_LOCK:
            _CACHE[key] = found
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        return dict(found[0]), dict(found[1])
    return found


def _walk_rows(
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
    return read_folder(session, root, path=prefix, recursive=recursive)[0]


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


def reach(roots: Select[Any, str], *, distinct: bool = True) -> CTE:
    """The trees that ``roots`` (rows of ``key``, ``tree_id``: root trees, each with a key such as its repo) reach,
    with the key of the root: each (key, tree) once if ``distinct``, else once per way to reach it."""
    top = roots.cte("reach", recursive=True)
    step = _T.alias("reach_step")
    down = select(top.c.key, step.c.subtree).where(step.c.tree_id == top.c.tree_id, step.c.subtree.is_not(None))
    return top.union(down) if distinct else top.union_all(down)


def files_reached(roots: Select[Any, str], *, distinct: bool = True) -> Select[Any, str, int, bool, str]:
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


# ---- a cache of trees ------------------------------------------------------------------------------------------


class _Trees:
    """Trees read during one call, each once: their rows by name."""

    def __init__(self, session: Session | None) -> None:
        self.session = session
        self.nodes: dict[str, dict[str, _Row]] = {EMPTY: {}}

    def rows(self, tree: str) -> dict[str, _Row]:
        if tree not in self.nodes:
            assert self.session is not None
            self.nodes[tree] = {
                r.name: _Row(r.subtree, r.sha256, r.git_oid, r.size, bool(r.lfs))
                for r in self.session.execute(_NODE, {"tree": tree})
            }
        return self.nodes[tree]

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
