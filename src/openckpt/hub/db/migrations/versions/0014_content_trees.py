"""content trees: directories stored as content-addressed tree objects

Each flat tree (``tree_entries``: every file of a commit, again for every commit) becomes the directory trees of
``tree_items`` (see ``services/trees.py``), shared between the commits that hold the same folders; each commit's
``tree_id`` becomes its root tree's id. Commit ids stay as they are (a commit id names a commit, whatever its tree is
stored as), so downloads pinned to a commit keep working. A tree of files only keeps its id.

The tree format is written out here rather than imported, so that this migration keeps building what it built.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LEAF = 32  # as services/trees.py when written: a directory of more names splits into 16 buckets
_DEPTH = 40
_BATCH = 1000

_items = sa.table(
    "tree_items",
    sa.column("tree_id", sa.String),
    sa.column("name", sa.String),
    sa.column("subtree", sa.String),
    sa.column("sha256", sa.String),
    sa.column("git_oid", sa.String),
    sa.column("size", sa.BigInteger),
    sa.column("lfs", sa.Boolean),
)
_entries = sa.table(
    "tree_entries",
    sa.column("tree_id", sa.String),
    sa.column("path", sa.String),
    sa.column("sha256", sa.String),
    sa.column("git_oid", sa.String),
    sa.column("size", sa.BigInteger),
    sa.column("lfs", sa.Boolean),
)
_commits = sa.table("commits", sa.column("tree_id", sa.String))

# a row: (subtree or None, sha256, git_oid, size, lfs)
Row = tuple[str | None, str, str, int, bool]


def _tree_id(rows: dict[str, Row]) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    for name in sorted(rows):
        subtree, sha256, _, size, lfs = rows[name]
        if subtree is None:
            h.update(f"{name}\0{sha256}\0{size}\0{int(lfs)}\n".encode())
        else:
            h.update(f"{name}{'' if name.startswith('/') else '/'}\0{subtree}\n".encode())
    return h.hexdigest()


def _digit(name: str, depth: int) -> str:
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[depth]


class _Builder:
    """Builds the trees of flat file lists, collecting the rows of those not stored yet."""

    def __init__(self, stored: set[str]) -> None:
        self.stored = stored
        self.pending: list[dict[str, Any]] = []

    def put(self, rows: dict[str, Row]) -> str:
        tree = _tree_id(rows)
        if tree not in self.stored:
            self.stored.add(tree)
            self.pending += [
                {
                    "tree_id": tree,
                    "name": n,
                    "subtree": r[0],
                    "sha256": r[1],
                    "git_oid": r[2],
                    "size": r[3],
                    "lfs": r[4],
                }
                for n, r in rows.items()
            ]
        return tree

    def names(self, names: dict[str, Row], depth: int = 0) -> str:
        if len(names) <= LEAF or depth >= _DEPTH:
            return self.put(names)
        groups: dict[str, dict[str, Row]] = {}
        for name, row in names.items():
            groups.setdefault(_digit(name, depth), {})[name] = row
        return self.put({f"/{d}": (self.names(g, depth + 1), "", "", len(g), False) for d, g in groups.items()})

    def folder(self, files: dict[str, Row]) -> str:
        """The tree of a folder holding ``files`` (by path relative to it)."""
        names: dict[str, Row] = {}
        below: dict[str, dict[str, Row]] = {}
        for path, row in files.items():
            head, sep, rest = path.partition("/")
            if sep:
                below.setdefault(head, {})[rest] = row
            else:
                names[head] = row
        for name, inner in below.items():
            names[name] = (self.folder(inner), "", "", 0, False)
        return self.names(names) if names else hashlib.sha1(b"", usedforsecurity=False).hexdigest()


def _flush(conn: sa.Connection, builder: _Builder) -> None:
    while builder.pending:
        batch, builder.pending = builder.pending[:_BATCH], builder.pending[_BATCH:]
        conn.execute(_items.insert(), batch)


def _flat_trees(conn: sa.Connection) -> Iterator[tuple[str, dict[str, Row]]]:
    """Each tree the commits name, with its files, one at a time."""
    for (tree,) in conn.execute(sa.select(_commits.c.tree_id).distinct()).all():
        rows = conn.execute(
            sa.select(_entries.c.path, _entries.c.sha256, _entries.c.git_oid, _entries.c.size, _entries.c.lfs).where(
                _entries.c.tree_id == tree
            )
        )
        yield tree, {path: (None, sha256, git_oid, size, bool(lfs)) for path, sha256, git_oid, size, lfs in rows}


def upgrade() -> None:
    op.create_table(
        "tree_items",
        sa.Column("tree_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("subtree", sa.String(length=40), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("git_oid", sa.String(length=40), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("lfs", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tree_id", "name"),
    )
    op.create_index(op.f("ix_tree_items_sha256"), "tree_items", ["sha256"], unique=False)
    op.create_index(op.f("ix_tree_items_subtree"), "tree_items", ["subtree"], unique=False)
    conn = op.get_bind()
    builder = _Builder(set())
    for old, files in _flat_trees(conn):
        new = builder.folder(files)
        _flush(conn, builder)
        if new != old:
            conn.execute(_commits.update().where(_commits.c.tree_id == old).values(tree_id=new))
    op.drop_index(op.f("ix_tree_entries_sha256"), table_name="tree_entries")
    op.drop_table("tree_entries")


def _files(conn: sa.Connection, tree: str, prefix: str = "") -> dict[str, Row]:
    out: dict[str, Row] = {}
    rows = conn.execute(
        sa.select(
            _items.c.name, _items.c.subtree, _items.c.sha256, _items.c.git_oid, _items.c.size, _items.c.lfs
        ).where(_items.c.tree_id == tree)
    ).all()
    for name, subtree, sha256, git_oid, size, lfs in rows:
        if subtree is None:
            out[prefix + name] = (None, sha256, git_oid, size, bool(lfs))
        else:
            out.update(_files(conn, subtree, prefix if name.startswith("/") else f"{prefix}{name}/"))
    return out


def downgrade() -> None:
    op.create_table(
        "tree_entries",
        sa.Column("tree_id", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("git_oid", sa.String(length=40), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("lfs", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("tree_id", "path"),
    )
    op.create_index(op.f("ix_tree_entries_sha256"), "tree_entries", ["sha256"], unique=False)
    conn = op.get_bind()
    for (root,) in conn.execute(sa.select(_commits.c.tree_id).distinct()).all():
        files = _files(conn, root)
        flat = _tree_id(files)
        if conn.execute(sa.select(_entries.c.path).where(_entries.c.tree_id == flat).limit(1)).first() is None:
            rows = [
                {"tree_id": flat, "path": p, "sha256": r[1], "git_oid": r[2], "size": r[3], "lfs": r[4]}
                for p, r in files.items()
            ]
            for i in range(0, len(rows), _BATCH):
                conn.execute(_entries.insert(), rows[i : i + _BATCH])
        if flat != root:
            conn.execute(_commits.update().where(_commits.c.tree_id == root).values(tree_id=flat))
    op.drop_index(op.f("ix_tree_items_subtree"), table_name="tree_items")
    op.drop_index(op.f("ix_tree_items_sha256"), table_name="tree_items")
    op.drop_table("tree_items")
