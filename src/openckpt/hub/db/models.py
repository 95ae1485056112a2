"""Tables of the hub. Repos hold refs; refs point at commits; commits point at root trees; trees list blobs and trees.

Ids follow git: commit and tree ids are 40-hex sha1s, a file's ``git_oid`` is its git blob sha1 (of the LFS
pointer for LFS files). Blob bytes live in the blob store under their sha256.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AccessRequest",
    "Account",
    "Base",
    "Blob",
    "Bucket",
    "BucketFile",
    "Collection",
    "CollectionItem",
    "Commit",
    "HubSecret",
    "Lease",
    "LfsPart",
    "Like",
    "LicensePolicy",
    "LineageEdge",
    "Membership",
    "Ref",
    "Repo",
    "RepoObject",
    "RepoRedirect",
    "Scan",
    "ScanRelease",
    "SigningKey",
    "Token",
    "TreeItem",
    "Upload",
    "WebSession",
    "Webhook",
    "XetFile",
    "XetSha256",
    "XetTerm",
    "Xorb",
    "XorbChunk",
    "utcnow",
]


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


class WebSession(Base):
    """A signed-in browser: its cookie holds a secret of which only the sha256 is stored. ``token_id`` is the token
    it signed in with (its revocation ends the session); it ends after ``expires_at``, or when unused for long."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # read | write: its token's
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Repo(Base):
    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("type", "owner_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(8))  # model | dataset | space
    owner_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(96))
    private: Mapped[bool] = mapped_column(default=False)
    gated: Mapped[str | None] = mapped_column(String(8), default=None)  # auto | manual
    default_branch: Mapped[str] = mapped_column(String(255), default="main", server_default="main")
    """The branch the repo's pages, ``model_info`` without a revision and ``card_data`` follow (an existing one)."""
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


class RepoRedirect(Base):
    """An old name of a moved repo: reads of ``type`` repo ``name`` of the account ``owner_id`` reach ``repo_id``.

    A repo created or moved under that name replaces the redirect.
    """

    __tablename__ = "repo_redirects"
    type: Mapped[str] = mapped_column(String(8), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(96), primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ref(Base):
    __tablename__ = "refs"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # branch | tag | pr (refs/pr/N)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    commit_id: Mapped[str] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text, default=None)


class Commit(Base):
    __tablename__ = "commits"
    __table_args__ = (Index("ix_commits_repo_created", "repo_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(String(40), default=None)
    tree_id: Mapped[str] = mapped_column(String(40), index=True)
    title: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TreeItem(Base):
    """One name of a tree (a directory, content-addressed: see ``services/trees.py``): a file, whose blob
    ``sha256`` names, or a folder, whose tree ``subtree`` names. Rows named ``/`` + a hex digit split a large
    directory into buckets: ``subtree`` is the bucket's tree and ``size`` the number of names in it."""

    __tablename__ = "tree_items"
    tree_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    subtree: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    git_oid: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    lfs: Mapped[bool] = mapped_column(default=False)


class RepoObject(Base):
    """An LFS or Xet-backed object (by sha256) some commit of ``repo_id`` added: whoever may read the repo's files
    may name it in a commit (proof of possession, :mod:`openckpt.hub.services.possession`)."""

    __tablename__ = "repo_objects"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Upload(Base):
    """Account ``account_id`` sent the object ``sha256``: verified LFS bytes (``file_hash`` empty), or a Xet file
    ``file_hash`` its shard registered under that sha256 (possession once that registration is verified)."""

    __tablename__ = "uploads"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    file_hash: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class HubSecret(Base):
    """A key every server of the hub shares (``signing``: transfer URLs and form tokens), as hex."""

    __tablename__ = "hub_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Blob(Base):
    """A blob whose bytes are in the store and verified."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LfsPart(Base):
    """Part ``number`` of an unfinished LFS multipart upload of the blob ``sha256`` of ``size`` bytes.

    Its ``part_size`` bytes are stored in the blob ``part_sha256`` after a header unique to this upload of this part
    (:data:`openckpt.hub.services.lfs.parts.HEADER_SIZE` bytes), so no other object ever has that name: not a
    ``blobs`` row, never served, and removed with its row once the upload completes or is abandoned.
    """

    __tablename__ = "lfs_parts"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    part_sha256: Mapped[str] = mapped_column(String(64), index=True)
    part_size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(32))
    """The md5 of the part's bytes (hex), as S3 answers."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessRequest(Base):
    """A user's request for access to a gated repo: ``pending``, ``accepted`` or ``rejected``."""

    __tablename__ = "access_requests"
    __table_args__ = (UniqueConstraint("repo_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(8))  # pending | accepted | rejected
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What the requester filled in the gate form (``extra_gated_fields``)."""
    rejection_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[Account] = relationship()


# ---- trust: scans of stored blobs, releases of flagged files, owners' signing keys -------------------------------


class Scan(Base):
    """The scanner's verdict on a blob, made once per blob and rules version (rescanned when the rules change)."""

    __tablename__ = "scans"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    rules_version: Mapped[str] = mapped_column(String(32), index=True)
    verdict: Mapped[str] = mapped_column(String(16))  # clean opaque needs_code inconclusive suspicious malicious
    completeness: Mapped[str] = mapped_column(String(16))  # complete | inconclusive
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    imports: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Globals outside the loader's allowlist that loading would import (``module.qualname``)."""
    runs: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Programs loading would run besides those imports, by the loader that runs them (``torch.jit.load``)."""
    scanned_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScanRelease(Base):
    """A flagged file of a repo that its owner or an admin let through: downloads of these bytes at this path work."""

    __tablename__ = "scan_releases"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    released_by: Mapped[str] = mapped_column(String(96))
    released_at: Mapped[datetime] = mapped_column(default=utcnow)


class SigningKey(Base):
    """A public key an account signs its models with (PEM); ``hint`` is the key hint model-signing bundles carry."""

    __tablename__ = "signing_keys"
    __table_args__ = (UniqueConstraint("account_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[str] = mapped_column(Text)
    hint: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---- governance: lineage of models, license policies -------------------------------------------------------------


class LineageEdge(Base):
    """A base model of a repo's default-branch head (``revision``), from its card, openckpt.json or adapter config.

    ``base`` is the id as written; ``base_repo_id`` is the local repo it names, None for bases on other hubs.
    """

    __tablename__ = "lineage_edges"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    base: Mapped[str] = mapped_column(String(512), primary_key=True)
    revision: Mapped[str] = mapped_column(String(40))
    base_repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"), index=True)
    base_revision: Mapped[str | None] = mapped_column(String(255), default=None)
    relation: Mapped[str] = mapped_column(String(16))  # finetune | adapter | merge | quantized
    source: Mapped[str] = mapped_column(String(16))  # card | manifest | adapter_config


class LicensePolicy(Base):
    """An organisation's license policy (the rules of :class:`openckpt.governance.policy.Policy`)."""

    __tablename__ = "license_policies"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str] = mapped_column(String(96))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---- Xet storage: xorbs of chunks, files as terms over xorbs, and the sha256 a commit names them by ---------------
#
# What references what (GC and accounting follow these, top-down): a tree entry's ``sha256`` → ``xet_sha256`` (when
# verified) → ``xet_files`` → ``xet_terms.xorb_hash`` → ``xorbs.blob_sha256``, a blob of the blob store that the
# ``blobs`` table does not list. A xorb no term references is garbage once no upload session can still name it.


class Xorb(Base):
    """A xorb (``hash`` in Xet string form), stored whole, without footer, as the blob ``blob_sha256``."""

    __tablename__ = "xorbs"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    blob_sha256: Mapped[str] = mapped_column(String(64), index=True)
    serialized_size: Mapped[int] = mapped_column(BigInteger)
    """Physical bytes: chunk headers and (compressed) payloads."""
    unpacked_size: Mapped[int] = mapped_column(BigInteger)
    """Logical bytes: the chunks uncompressed."""
    num_chunks: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    encoding: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    """How the object keeps the chunks: 0 as uploaded, 1 packed (``services/compression.py``; served
    uncompressed, ``serialized_size`` and the chunks' byte ranges are then the served layout's), 2 kept as uploaded
    because packing saved nothing, 3 a delta against base xorbs (``services/deltas.py``; served as packed ones)."""
    stored_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Bytes of the store object when it differs from ``serialized_size`` (a packed xorb)."""


class XorbChunk(Base):
    """Chunk ``chunk_index`` of a xorb: its hash, where its bytes are unpacked, and its serialized byte range."""

    __tablename__ = "xorb_chunks"
    xorb_hash: Mapped[str] = mapped_column(ForeignKey("xorbs.hash", ondelete="CASCADE"), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(primary_key=True)
    chunk_hash: Mapped[str] = mapped_column(String(64), index=True)
    unpacked_offset: Mapped[int] = mapped_column(BigInteger)
    unpacked_size: Mapped[int] = mapped_column()
    byte_start: Mapped[int] = mapped_column(BigInteger)
    """Offset of the chunk's header in the xorb blob."""
    byte_end: Mapped[int] = mapped_column(BigInteger)
    """End (exclusive) of the chunk's payload in the xorb blob."""
    global_dedup: Mapped[bool] = mapped_column(default=False)
    """Answered by global-dedup queries: eligible by its hash, or the first chunk of a registered file."""


class XorbDeltaBase(Base):
    """A xorb stored as a delta (encoding 3, ``services/deltas.py``) and a xorb whose chunks it is XORed against.

    The base must stay stored (no cascade: the database refuses to drop a base a delta names) and is never a delta
    itself, so rebuilding a delta reads its bases once: one level deep."""

    __tablename__ = "xorb_delta_bases"
    xorb_hash: Mapped[str] = mapped_column(ForeignKey("xorbs.hash", ondelete="CASCADE"), primary_key=True)
    base_xorb: Mapped[str] = mapped_column(ForeignKey("xorbs.hash"), primary_key=True, index=True)


class XetFile(Base):
    """A file registered by a shard: ``hash`` (Xet file hash) and its unpacked ``size``; its terms in ``xet_terms``."""

    __tablename__ = "xet_files"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    num_terms: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class XetTerm(Base):
    """Term ``term_index`` of a file: chunks ``[chunk_start, chunk_end)`` of a xorb, ``size`` bytes unpacked."""

    __tablename__ = "xet_terms"
    file_hash: Mapped[str] = mapped_column(ForeignKey("xet_files.hash", ondelete="CASCADE"), primary_key=True)
    term_index: Mapped[int] = mapped_column(primary_key=True)
    xorb_hash: Mapped[str] = mapped_column(ForeignKey("xorbs.hash"), index=True)
    chunk_start: Mapped[int] = mapped_column()
    chunk_end: Mapped[int] = mapped_column()
    size: Mapped[int] = mapped_column(BigInteger)


class XetSha256(Base):
    """A file's sha256 (what commits name it by) → its Xet file, as a shard declared it.

    ``verified`` once the hub reconstructed the bytes and found that sha256; only verified rows back tree entries.
    ``repo_id`` is the repo whose write token registered it.
    """

    __tablename__ = "xet_sha256"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_hash: Mapped[str] = mapped_column(
        ForeignKey("xet_files.hash", ondelete="CASCADE"), primary_key=True, index=True
    )
    size: Mapped[int] = mapped_column(BigInteger)
    verified: Mapped[bool] = mapped_column(default=False)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class XetUpload(Base):
    """One registered shard (an upload session's files): by which repo's token and which account, and when. Global
    dedup answers list what one upload made together, as the Hub keeps shards per upload."""

    __tablename__ = "xet_uploads"
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"), default=None, index=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class XetUploadXorb(Base):
    """Xorb ``position`` of an upload: the xorbs its files' terms name, in file order (no foreign key: garbage
    collection may sweep a xorb; answers skip the missing)."""

    __tablename__ = "xet_upload_xorbs"
    upload_id: Mapped[int] = mapped_column(ForeignKey("xet_uploads.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    xorb_hash: Mapped[str] = mapped_column(String(64), index=True)


# ---- leases: work that one process of the hub does at a time (scheduled garbage collection) ----------------------


class Lease(Base):
    """``name`` is held by ``holder`` until ``expires_at``; an expired lease is free for anyone to take."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()


# ---- webhooks: URLs an account has the hub POST to when repos it watches change ----------------------------------


class Webhook(Base):
    """A webhook of ``account_id`` (``id``: 24 hex digits, as on the Hub). ``watched`` is ``[{type, name}]``;
    ``secret`` is sent back to the receiver in ``X-Webhook-Secret``, so it is kept encrypted, not hashed
    (``openckpt.hub.services.sealed``)."""

    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    watched: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str | None] = mapped_column(String(2048), default=None)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookOutbox(Base):
    """A delivery of ``payload`` to ``webhook_id`` not yet made: written in the transaction of its event, deleted once
    the receiver took it. A server sending it holds it until ``claimed_until``; ``id`` orders a webhook's rows."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "next_attempt_at"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(primary_key=True)
    """Never reused (SQLite's AUTOINCREMENT; a sequence elsewhere), so a delivery id names one delivery only."""
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ---- community: likes of repos, collections of repos, papers and collections -------------------------------------


class Like(Base):
    """``account_id`` likes ``repo_id``; ``repos.likes`` counts these rows (kept in the same transaction)."""

    __tablename__ = "likes"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Collection(Base):
    """A collection of ``owner_id`` (``id``: 24 hex digits, as on the Hub); its slug is ``owner/title-slug-id``.
    ``position`` orders the owner's collections."""

    __tablename__ = "collections"
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    private: Mapped[bool] = mapped_column(default=False)
    theme: Mapped[str] = mapped_column(String(16), default="orange")
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    owner: Mapped[Account] = relationship()


class CollectionItem(Base):
    """An item of a collection at ``position``: a repo (``repo_id``), another collection (``target_id``) or a paper
    (``paper_id``, as given). Items of a deleted repo or collection go with it."""

    __tablename__ = "collection_items"
    __table_args__ = (
        UniqueConstraint("collection_id", "repo_id"),
        UniqueConstraint("collection_id", "target_id"),
        UniqueConstraint("collection_id", "paper_id"),
    )
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # model | dataset | space | paper | collection
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[str | None] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[str | None] = mapped_column(String(64), default=None)
    position: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Discussion(Base):
    """A discussion or pull request of a repo, numbered per repo as on the Hub (both share the numbers). A pull
    request's commits are on the ref ``refs/pr/{num}`` (kind ``pr``), started at ``base_commit`` of its target."""

    __tablename__ = "discussions"
    __table_args__ = (UniqueConstraint("repo_id", "num"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    num: Mapped[int] = mapped_column()
    title: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(96))
    is_pull_request: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(8))  # open | closed | merged | draft
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    target_branch: Mapped[str | None] = mapped_column(String(255), default=None)
    base_commit: Mapped[str | None] = mapped_column(String(40), default=None)
    merge_commit: Mapped[str | None] = mapped_column(String(40), default=None)


class DiscussionEvent(Base):
    """One event of a discussion: a comment (``content``, edited, hidden), a status change (``content``: the new
    status), a title change (``content``: the new title, ``old``: the former) or a commit (``content``: its title,
    ``old``: its id)."""

    __tablename__ = "discussion_events"
    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    discussion_id: Mapped[int] = mapped_column(ForeignKey("discussions.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # comment | status-change | title-change | commit
    author: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    content: Mapped[str] = mapped_column(Text, default="")
    old: Mapped[str | None] = mapped_column(Text, default=None)
    hidden: Mapped[bool] = mapped_column(default=False)
    edits: Mapped[int] = mapped_column(default=0)


# ---- buckets: mutable, unversioned storage of Xet files (``HfApi.create_bucket``, ``batch_bucket_files``) ---------


class Bucket(Base):
    """A bucket of ``owner_id``: files by path, overwritten in place, without history."""

    __tablename__ = "buckets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(96))
    private: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    owner: Mapped[Account] = relationship()

    @property
    def bucket_id(self) -> str:
        return f"{self.owner.name}/{self.name}"


class BucketFile(Base):
    """The file at ``path`` in a bucket: the Xet file ``xet_hash`` (kept by garbage collection while named here),
    ``mtime`` in milliseconds as the client sent it. Paths compare byte by byte (collation ``C`` on PostgreSQL)."""

    __tablename__ = "bucket_files"
    bucket_id: Mapped[int] = mapped_column(ForeignKey("buckets.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(
        String(1024).with_variant(String(1024, collation="C"), "postgresql"), primary_key=True
    )
    xet_hash: Mapped[str] = mapped_column(ForeignKey("xet_files.hash"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(255), default=None)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)
