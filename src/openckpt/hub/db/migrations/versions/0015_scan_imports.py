"""scan imports: what loading a scanned file would import and run (the packages a "needs code" file needs)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("imports", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("runs", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.drop_column("runs")
        batch.drop_column("imports")
