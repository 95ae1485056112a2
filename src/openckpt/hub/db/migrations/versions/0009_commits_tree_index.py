"""commits by tree: which commits hold a tree, for storage accounting of one repo and for GC

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_commits_tree_id"), "commits", ["tree_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_commits_tree_id"), table_name="commits")
