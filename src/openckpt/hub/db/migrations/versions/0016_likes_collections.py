"""likes and collections: who likes which repo, and collections of repos, papers and collections

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "likes",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "repo_id"),
    )
    op.create_index(op.f("ix_likes_repo_id"), "likes", ["repo_id"], unique=False)
    # repos.likes counts the rows of likes from now on; nothing could like a repo before
    op.execute("UPDATE repos SET likes = 0")
    op.create_table(
        "collections",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("theme", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_collections_owner_id"), "collections", ["owner_id"], unique=False)
    op.create_table(
        "collection_items",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("collection_id", sa.String(length=24), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=True),
        sa.Column("target_id", sa.String(length=24), nullable=True),
        sa.Column("paper_id", sa.String(length=64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["target_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "paper_id"),
        sa.UniqueConstraint("collection_id", "repo_id"),
        sa.UniqueConstraint("collection_id", "target_id"),
    )
    for column in ("collection_id", "repo_id", "target_id"):
        op.create_index(op.f(f"ix_collection_items_{column}"), "collection_items", [column], unique=False)


def downgrade() -> None:
    for column in ("target_id", "repo_id", "collection_id"):
        op.drop_index(op.f(f"ix_collection_items_{column}"), table_name="collection_items")
    op.drop_table("collection_items")
    op.drop_index(op.f("ix_collections_owner_id"), table_name="collections")
    op.drop_table("collections")
    op.drop_index(op.f("ix_likes_repo_id"), table_name="likes")
    op.drop_table("likes")
