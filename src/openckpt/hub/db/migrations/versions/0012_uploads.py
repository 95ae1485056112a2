"""uploads: which account uploaded which object, and which objects each repo's commits added (proof of possession)

``repo_objects`` is filled from the LFS files of every commit of every repo (the tree rows as stored at this
revision), so that a repo's readers may keep naming what its history holds.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repo_objects",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repo_id", "sha256"),
    )
    op.create_index(op.f("ix_repo_objects_sha256"), "repo_objects", ["sha256"], unique=False)
    op.create_table(
        "uploads",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "sha256", "file_hash"),
    )
    op.create_index(op.f("ix_uploads_sha256"), "uploads", ["sha256"], unique=False)
    op.create_index(op.f("ix_uploads_created_at"), "uploads", ["created_at"], unique=False)
    op.execute(
        "INSERT INTO repo_objects (repo_id, sha256) "
        "SELECT DISTINCT c.repo_id, t.sha256 FROM commits c JOIN tree_entries t ON t.tree_id = c.tree_id "
        "WHERE t.lfs"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_uploads_created_at"), table_name="uploads")
    op.drop_index(op.f("ix_uploads_sha256"), table_name="uploads")
    op.drop_table("uploads")
    op.drop_index(op.f("ix_repo_objects_sha256"), table_name="repo_objects")
    op.drop_table("repo_objects")
