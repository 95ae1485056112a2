"""Tables of the hub. Repos hold refs; refs point at commits; commits point at trees; trees list blobs.

Ids follow git: commit and tree ids are 40-hex sha1s, a file's ``git_oid`` is its git blob sha1 (of the LFS
pointer for LFS files). Blob bytes live in the blob store under their sha256.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Account", "Base", "Blob", "Commit", "Membership", "Ref", "Repo", "Token", "TreeEntry", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A user or an organisation; names share one namespace."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(96), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # user | org
    fullname: Mapped[str] = mapped_column(String(200), default="")
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    org_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))  # read | write | admin


class Token(Base):
    """An access token; only the sha256 of its secret is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(8))  # read | write
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    account: Mapped[Account] = relationship()


class Repo(Base):
    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("type", "owner_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(8))  # model | dataset | space
    owner_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(96))
    private: Mapped[bool] = mapped_column(default=False)
    gated: Mapped[str | None] = mapped_column(String(8), default=None)  # auto | manual
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(default=utcnow)
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
    likes: Mapped[int] = mapped_column(default=0)
    card_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Front matter of README.md on the default branch (kept in sync by commits to it)."""
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    pipeline_tag: Mapped[str | None] = mapped_column(String(64), default=None)
    library_name: Mapped[str | None] = mapped_column(String(64), default=None)
    owner: Mapped[Account] = relationship()

    @property
    def repo_id(self) -> str:
        return f"{self.owner.name}/{self.name}"


class Ref(Base):
    __tablename__ = "refs"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # branch | tag
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    commit_id: Mapped[str] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text, default=None)


class Commit(Base):
    __tablename__ = "commits"
    __table_args__ = (Index("ix_commits_repo_created", "repo_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(String(40), default=None)
    tree_id: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TreeEntry(Base):
    """One file of a tree. Trees are content-addressed, so an unchanged tree is stored once."""

    __tablename__ = "tree_entries"
    tree_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    git_oid: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    lfs: Mapped[bool] = mapped_column(default=False)


class Blob(Base):
    """A blob whose bytes are in the store and verified."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
