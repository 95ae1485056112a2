"""default branch: the branch a repo's pages, model_info without a revision and its card data follow (main until
the owner picks another)

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("repos") as batch:
        batch.add_column(sa.Column("default_branch", sa.String(length=255), nullable=False, server_default="main"))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN in place: a batch copy would drop the old table, and SQLite's foreign keys would then
    # delete every row that references a repo (commits, refs, …) by their ON DELETE CASCADE
    op.drop_column("repos", "default_branch")
