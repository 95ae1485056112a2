"""governance: lineage edges of models, organisations' license policies

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lineage_edges",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("base", sa.String(length=512), nullable=False),
        sa.Column("revision", sa.String(length=40), nullable=False),
        sa.Column("base_repo_id", sa.Integer(), nullable=True),
        sa.Column("base_revision", sa.String(length=255), nullable=True),
        sa.Column("relation", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["base_repo_id"], ["repos.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("repo_id", "base"),
    )
    with op.batch_alter_table("lineage_edges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lineage_edges_base_repo_id"), ["base_repo_id"], unique=False)
    op.create_table(
        "license_policies",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=96), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )


def downgrade() -> None:
    op.drop_table("license_policies")
    with op.batch_alter_table("lineage_edges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_edges_base_repo_id"))
    op.drop_table("lineage_edges")
