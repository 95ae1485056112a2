"""xorb deltas: which base xorbs a xorb stored as a delta (encoding 3) is XORed against; a base named here cannot
be dropped

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "xorb_delta_bases",
        sa.Column("xorb_hash", sa.String(length=64), nullable=False),
        sa.Column("base_xorb", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["xorb_hash"], ["xorbs.hash"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["base_xorb"], ["xorbs.hash"]),
        sa.PrimaryKeyConstraint("xorb_hash", "base_xorb"),
    )
    op.create_index(op.f("ix_xorb_delta_bases_base_xorb"), "xorb_delta_bases", ["base_xorb"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_xorb_delta_bases_base_xorb"), table_name="xorb_delta_bases")
    op.drop_table("xorb_delta_bases")
