"""xet uploads: the xorbs each registered shard's files use, in file order (what a global-dedup answer lists)

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "xet_uploads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_xet_uploads_repo_id"), "xet_uploads", ["repo_id"], unique=False)
    op.create_index(op.f("ix_xet_uploads_account_id"), "xet_uploads", ["account_id"], unique=False)
    op.create_table(
        "xet_upload_xorbs",
        sa.Column("upload_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("xorb_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["xet_uploads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("upload_id", "position"),
    )
    op.create_index(op.f("ix_xet_upload_xorbs_xorb_hash"), "xet_upload_xorbs", ["xorb_hash"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_xet_upload_xorbs_xorb_hash"), table_name="xet_upload_xorbs")
    op.drop_table("xet_upload_xorbs")
    op.drop_index(op.f("ix_xet_uploads_account_id"), table_name="xet_uploads")
    op.drop_index(op.f("ix_xet_uploads_repo_id"), table_name="xet_uploads")
    op.drop_table("xet_uploads")
