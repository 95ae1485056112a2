"""discussions and pull requests: numbered per repo, with their events; a pull request's ref is kind ``pr``

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "discussions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("num", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("author", sa.String(length=96), nullable=False),
        sa.Column("is_pull_request", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("target_branch", sa.String(length=255), nullable=True),
        sa.Column("base_commit", sa.String(length=40), nullable=True),
        sa.Column("merge_commit", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repo_id", "num"),
    )
    op.create_index(op.f("ix_discussions_repo_id"), "discussions", ["repo_id"], unique=False)
    op.create_table(
        "discussion_events",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("discussion_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=96), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("old", sa.Text(), nullable=True),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("edits", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["discussion_id"], ["discussions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_discussion_events_discussion_id"), "discussion_events", ["discussion_id"], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM refs WHERE kind = 'pr'")
    op.drop_index(op.f("ix_discussion_events_discussion_id"), table_name="discussion_events")
    op.drop_table("discussion_events")
    op.drop_index(op.f("ix_discussions_repo_id"), table_name="discussions")
    op.drop_table("discussions")
