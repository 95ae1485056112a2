"""lfs parts: parts of LFS multipart uploads, in the shared store, so that any server takes any part

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lfs_parts",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("part_sha256", sa.String(length=64), nullable=False),
        sa.Column("part_size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "size", "number"),
    )
    op.create_index(op.f("ix_lfs_parts_part_sha256"), "lfs_parts", ["part_sha256"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_lfs_parts_part_sha256"), table_name="lfs_parts")
    op.drop_table("lfs_parts")
