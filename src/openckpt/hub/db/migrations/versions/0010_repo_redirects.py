"""repo redirects: old names of moved repos, so that reads of an old name reach the repo

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "repo_redirects",
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("type", "owner_id", "name"),
    )
    op.create_index(op.f("ix_repo_redirects_repo_id"), "repo_redirects", ["repo_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_repo_redirects_repo_id"), table_name="repo_redirects")
    op.drop_table("repo_redirects")
