"""xorb encoding at rest: how the store keeps a xorb (0 as uploaded, 1 packed, 2 measured and kept as uploaded) and
the bytes its object holds (null: ``serialized_size``)

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("xorbs") as batch:
        batch.add_column(sa.Column("encoding", sa.SmallInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("stored_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # in place, not by a batch copy: dropping the old table would cascade to every row that references a xorb
    op.drop_column("xorbs", "stored_size")
    op.drop_column("xorbs", "encoding")
