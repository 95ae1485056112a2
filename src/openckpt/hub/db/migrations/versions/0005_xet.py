"""xet: xorbs and their chunks, files as terms over xorbs, sha256 → Xet file

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "xorbs",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("serialized_size", sa.BigInteger(), nullable=False),
        sa.Column("unpacked_size", sa.BigInteger(), nullable=False),
        sa.Column("num_chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_index(op.f("ix_xorbs_blob_sha256"), "xorbs", ["blob_sha256"], unique=False)
    op.create_table(
        "xorb_chunks",
        sa.Column("xorb_hash", sa.String(length=64), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("chunk_hash", sa.String(length=64), nullable=False),
        sa.Column("unpacked_offset", sa.BigInteger(), nullable=False),
        sa.Column("unpacked_size", sa.Integer(), nullable=False),
        sa.Column("byte_start", sa.BigInteger(), nullable=False),
        sa.Column("byte_end", sa.BigInteger(), nullable=False),
        sa.Column("global_dedup", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["xorb_hash"], ["xorbs.hash"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("xorb_hash", "chunk_index"),
    )
    op.create_index(op.f("ix_xorb_chunks_chunk_hash"), "xorb_chunks", ["chunk_hash"], unique=False)
    op.create_table(
        "xet_files",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("num_terms", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_table(
        "xet_terms",
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("term_index", sa.Integer(), nullable=False),
        sa.Column("xorb_hash", sa.String(length=64), nullable=False),
        sa.Column("chunk_start", sa.Integer(), nullable=False),
        sa.Column("chunk_end", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["file_hash"], ["xet_files.hash"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["xorb_hash"], ["xorbs.hash"]),
        sa.PrimaryKeyConstraint("file_hash", "term_index"),
    )
    op.create_index(op.f("ix_xet_terms_xorb_hash"), "xet_terms", ["xorb_hash"], unique=False)
    op.create_table(
        "xet_sha256",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["file_hash"], ["xet_files.hash"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("sha256", "file_hash"),
    )
    op.create_index(op.f("ix_xet_sha256_file_hash"), "xet_sha256", ["file_hash"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_xet_sha256_file_hash"), table_name="xet_sha256")
    op.drop_table("xet_sha256")
    op.drop_index(op.f("ix_xet_terms_xorb_hash"), table_name="xet_terms")
    op.drop_table("xet_terms")
    op.drop_table("xet_files")
    op.drop_index(op.f("ix_xorb_chunks_chunk_hash"), table_name="xorb_chunks")
    op.drop_table("xorb_chunks")
    op.drop_index(op.f("ix_xorbs_blob_sha256"), table_name="xorbs")
    op.drop_table("xorbs")
