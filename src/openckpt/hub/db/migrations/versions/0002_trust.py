"""trust: scans, scan releases, signing keys

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scans",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rules_version", sa.String(length=32), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("completeness", sa.String(length=16), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("scanned_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_index(op.f("ix_scans_rules_version"), "scans", ["rules_version"], unique=False)
    op.create_table(
        "scan_releases",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("released_by", sa.String(length=96), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repo_id", "path", "sha256"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("hint", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_index(op.f("ix_signing_keys_account_id"), "signing_keys", ["account_id"], unique=False)
    op.create_index(op.f("ix_signing_keys_hint"), "signing_keys", ["hint"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_signing_keys_hint"), table_name="signing_keys")
    op.drop_index(op.f("ix_signing_keys_account_id"), table_name="signing_keys")
    op.drop_table("signing_keys")
    op.drop_table("scan_releases")
    op.drop_index(op.f("ix_scans_rules_version"), table_name="scans")
    op.drop_table("scans")
