"""buckets: mutable, unversioned storage of Xet files under an account, a row per path

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

PATH = sa.String(length=1024).with_variant(sa.String(length=1024, collation="C"), "postgresql")
"""Paths sort and compare byte by byte on both databases (listings page by path)."""


def upgrade() -> None:
    op.create_table(
        "buckets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "name"),
    )
    op.create_index(op.f("ix_buckets_owner_id"), "buckets", ["owner_id"], unique=False)
    op.create_table(
        "bucket_files",
        sa.Column("bucket_id", sa.Integer(), nullable=False),
        sa.Column("path", PATH, nullable=False),
        sa.Column("xet_hash", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["bucket_id"], ["buckets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["xet_hash"], ["xet_files.hash"]),
        sa.PrimaryKeyConstraint("bucket_id", "path"),
    )
    op.create_index(op.f("ix_bucket_files_xet_hash"), "bucket_files", ["xet_hash"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_bucket_files_xet_hash"), table_name="bucket_files")
    op.drop_table("bucket_files")
    op.drop_index(op.f("ix_buckets_owner_id"), table_name="buckets")
    op.drop_table("buckets")
