"""Storage accounting: logical against physical bytes per repo, per owner and in total, and who uses each xorb.

- ``logical_bytes``: the sum of the file sizes in the head commit of each branch (what checking out every branch
  would download); ``history_bytes``: the sum of the sizes of the distinct files (by sha256) in all the repo's
  commits, which is what the hub has to keep for the repo.
- Physical bytes are stored objects: whole blobs (LFS and regular files, unless Xet ingestion replaced them by
  xorbs) and xorbs (serialized bytes, compressed). An object is *used* by a repo when a file of any of its commits
  is that blob, or a Xet file registered for that file's sha256 has a term in that xorb.
- Fair attribution: each object's bytes are split equally among the repos using it (``physical_bytes``);
  ``unique_bytes`` are the objects only this repo (owner) uses, ``shared_bytes`` the whole size of those it shares
  with others. Summed over repos, ``physical_bytes`` is the referenced physical total.
- ``dedup_ratio`` = ``history_bytes`` / ``physical_bytes``: how many bytes of files each stored byte serves.
- ``deduplicated_bytes``: the same split of the objects' bytes before compression (a xorb's chunks unpacked), so
  ``history_bytes`` → ``deduplicated_bytes`` is what dedup saves and → ``physical_bytes`` what compression at rest
  (``services/compression.py``) and deltas (``services/deltas.py``: ``delta_bytes`` of it) save on top; a delta's
  base counts for the repos using the base.
- Buckets use objects too: the xorbs of the Xet files their paths name now. They share objects with repos and each
  other by the same split, and :func:`account` gives them figures (``buckets``; logical bytes: the sum of their
  paths' sizes, history bytes: of their distinct files).

:func:`account` reads the whole hub; :func:`account_repo` (one repo) and :func:`account_owner` (one owner's repos)
give the same figures from the same helpers, fed only with those repos' files, the objects they use and the other
repos' files that use those objects.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CompoundSelect, Select, func, or_, select, union
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from openckpt.errors import RepoNotFoundError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Blob, Bucket, BucketFile, Commit, Ref, Repo, XetSha256, XetTerm, Xorb
from openckpt.hub.services.delta_reads import DELTA
from openckpt.hub.services.stored_files import raw_blobs
from openckpt.hub.services.trees import files_reached, holders
from openckpt.store.blobs import BlobStore

__all__ = ["Accounting", "RepoUsage", "Usage", "XorbUsage", "account", "account_owner", "account_repo"]


@dataclass
class Usage:
    """Bytes of one repo, one owner, or the whole hub."""

    logical_bytes: int = 0
    history_bytes: int = 0
    physical_bytes: float = 0.0
    deduplicated_bytes: float = 0.0
    unique_bytes: int = 0
    shared_bytes: int = 0
    files: int = 0
    """Distinct files (by sha256) in all commits."""
    delta_bytes: float = 0.0
    """The part of ``physical_bytes`` stored as deltas against base xorbs (``services/deltas.py``)."""

    @property
    def dedup_ratio(self) -> float | None:
        return self.history_bytes / self.physical_bytes if self.physical_bytes else None

    def as_dict(self) -> dict[str, Any]:
        ratio = self.dedup_ratio
        return {
            "logicalBytes": self.logical_bytes,
            "historyBytes": self.history_bytes,
            "physicalBytes": round(self.physical_bytes),
            "deduplicatedBytes": round(self.deduplicated_bytes),
            "uniqueBytes": self.unique_bytes,
            "sharedBytes": self.shared_bytes,
            "files": self.files,
            "deltaBytes": round(self.delta_bytes),
            "dedupRatio": None if ratio is None else round(ratio, 4),
        }


@dataclass
class RepoUsage(Usage):
    id: int = 0
    repo_id: str = ""
    type: str = "model"
    owner: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.repo_id, "type": self.type, "owner": self.owner, **super().as_dict()}


@dataclass(frozen=True)
class XorbUsage:
    """A xorb's reference counts: the Xet files with a term in it, and the repos whose commits use those files."""

    hash: str
    bytes: int
    files: int
    repos: int

    def as_dict(self) -> dict[str, Any]:
        return {"hash": self.hash, "bytes": self.bytes, "files": self.files, "repos": self.repos}


@dataclass
class Accounting:
    total: Usage
    owners: dict[str, Usage]
    repos: dict[int, RepoUsage]
    """By repo primary key; buckets (type ``bucket``) by the negated primary key of theirs."""
    xorbs: list[XorbUsage]
    """Every xorb, the largest first."""
    stored_bytes: int = 0
    """All physical bytes, used or not."""
    unreferenced_bytes: int = 0
    """Physical bytes no commit uses (young uploads, or garbage for the collector)."""
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self, *, xorbs: int = 100) -> dict[str, Any]:
        """JSON: totals, owners, repos (largest first) and the ``xorbs`` largest xorbs with their reference counts."""
        repos = sorted(self.repos.values(), key=lambda r: (-r.physical_bytes, r.repo_id))
        buckets = [r for r in repos if r.type == "bucket"]
        repos = [r for r in repos if r.type != "bucket"]
        return {
            "total": {
                **self.total.as_dict(),
                "storedBytes": self.stored_bytes,
                "unreferencedBytes": self.unreferenced_bytes,
                **self.counts,
            },
            "owners": [{"name": name, **usage.as_dict()} for name, usage in sorted(self.owners.items())],
            "repos": [r.as_dict() for r in repos],
            "buckets": [b.as_dict() for b in buckets],
            "xorbs": [x.as_dict() for x in self.xorbs[:xorbs]],
        }


_ROOTS = select(Commit.repo_id.label("key"), Commit.tree_id.label("tree_id"))
_FOUND = files_reached(_ROOTS).subquery()
_HISTORY = select(_FOUND.c.key, _FOUND.c.sha256, _FOUND.c.size).distinct()
"""Each repo's distinct files over all its commits (each tree of its history read once)."""


def _heads(which: Any = None) -> Select[Any, Any]:
    """Each repo's logical bytes: the sizes of the files in its branches' head commits (of repos ``which`` only)."""
    roots = select(Ref.repo_id.label("key"), Commit.tree_id.label("tree_id")).join(Commit, Commit.id == Ref.commit_id)
    roots = roots.where(Ref.kind == "branch") if which is None else roots.where(Ref.kind == "branch", which)
    files = files_reached(roots, distinct=False).subquery()  # a file at two paths, or in two branches, counts twice
    return select(files.c.key, func.sum(files.c.size)).group_by(files.c.key)


_HEADS = _heads()
_XET_FILES = select(XetSha256.sha256, XetSha256.file_hash)
_TERMS = select(XetTerm.file_hash, XetTerm.xorb_hash).distinct()


def _stored_blobs(session: Session, blobs: BlobStore, among: Select[str] | None = None) -> dict[str, int]:
    """Stored whole blobs (sha256 → bytes), all or those whose sha256 ``among`` selects."""
    xet_backed = select(XetSha256.sha256).where(XetSha256.verified.is_(True))
    rows = select(Blob.sha256, Blob.size)
    if among is not None:
        xet_backed, rows = xet_backed.where(XetSha256.sha256.in_(among)), rows.where(Blob.sha256.in_(among))
    backed = set(session.scalars(xet_backed))
    # Xet ingestion may have dropped the whole copy of a Xet-backed blob
    return {sha256: size for sha256, size in session.execute(rows) if sha256 not in backed or blobs.exists(sha256)}


def _links(
    session: Session,
    sha256s: Select[str] | CompoundSelect[str] | None = None,
    xorbs: Select[Any] | CompoundSelect[Any] | None = None,
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """sha256 → its Xet files, and Xet file → the xorbs of its terms (all, or only ``sha256s`` and ``xorbs``)."""
    xet_files: dict[str, set[str]] = defaultdict(set)
    names = _XET_FILES if sha256s is None else _XET_FILES.where(XetSha256.sha256.in_(sha256s))
    for sha256, file_hash in session.execute(names):
        xet_files[sha256].add(file_hash)
    terms: dict[str, set[str]] = defaultdict(set)
    for file_hash, xorb in session.execute(_TERMS if xorbs is None else _TERMS.where(XetTerm.xorb_hash.in_(xorbs))):
        terms[file_hash].add(xorb)
    return xet_files, terms


def _users(
    files: dict[int, dict[str, int]], stored: dict[str, int], xet_files: dict[str, set[str]], terms: dict[str, set[str]]
) -> dict[str, set[int]]:
    """Each used object ("b:" + sha256 or "x:" + xorb hash) → the repos whose files use it."""
    users: dict[str, set[int]] = defaultdict(set)
    for rid, repo_files in files.items():
        for sha256 in repo_files:
            if sha256 in stored:
                users["b:" + sha256].add(rid)
            for file_hash in xet_files.get(sha256, ()):
                for xorb in terms.get(file_hash, ()):
                    users["x:" + xorb].add(rid)
    return users


def _sizes(stored: dict[str, int], xorbs: dict[str, int]) -> dict[str, int]:
    return {**{"b:" + s: n for s, n in stored.items()}, **{"x:" + x: n for x, n in xorbs.items()}}


def _xorb_sizes(
    session: Session, which: ColumnElement[bool] | None = None
) -> tuple[dict[str, int], dict[str, int], set[str]]:
    """Per xorb, the bytes its store object holds, and its chunks' bytes unpacked; the keys of those stored as
    deltas."""
    stmt = select(Xorb.hash, func.coalesce(Xorb.stored_size, Xorb.serialized_size), Xorb.unpacked_size, Xorb.encoding)
    rows = session.execute(stmt if which is None else stmt.where(which)).tuples().all()
    deltas = {"x:" + x for x, _, _, e in rows if e == DELTA}
    return {x: int(n) for x, n, _, _ in rows}, {x: int(u) for x, _, u, _ in rows}, deltas


def account(db: Database, store: BlobStore) -> Accounting:
    """The whole hub's accounting (reads every commit's file list: meant for admin pages and occasional calls)."""
    blobs = raw_blobs(store)
    with db.read() as session:
        repos = {
            rid: RepoUsage(id=rid, repo_id=f"{owner}/{name}", type=kind, owner=owner)
            for rid, kind, name, owner in session.execute(
                select(Repo.id, Repo.type, Repo.name, Account.name).join(Account, Account.id == Repo.owner_id)
            )
        }
        files: dict[int, dict[str, int]] = defaultdict(dict)
        for rid, sha256, size in session.execute(_HISTORY):
            files[rid][sha256] = size
        logical = {rid: int(total or 0) for rid, total in session.execute(_HEADS)}
        stored = _stored_blobs(session, blobs)
        xorb_sizes, unpacked, deltas = _xorb_sizes(session)
        xet_files, terms = _links(session)
        _bucket_files(session, files, logical, xet_files)
        _bucket_entries(session, repos)
    users = _users(files, stored, xet_files, terms)
    sizes = _sizes(stored, xorb_sizes)
    return _attribute(repos, files, logical, users, sizes, terms, _sizes(stored, unpacked), deltas=deltas)


def _bucket_files(
    session: Session,
    files: dict[int, dict[str, int]],
    logical: dict[int, int],
    xet_files: dict[str, set[str]],
    *,
    which: ColumnElement[bool] | None = None,
) -> None:
    """Buckets as users of objects, under the negated key of each: a Xet file a bucket names is a file of it (its key
    ``xet:`` + hash) whose sizes over its paths add to its logical bytes. ``which`` keeps the rows it is true of."""
    rows = select(BucketFile.bucket_id, BucketFile.xet_hash, BucketFile.size)
    for bid, xet_hash, size in session.execute(rows if which is None else rows.where(which)):
        files[-bid]["xet:" + xet_hash] = size
        logical[-bid] = logical.get(-bid, 0) + size
        xet_files["xet:" + xet_hash] = {xet_hash}


def _bucket_entries(session: Session, repos: dict[int, RepoUsage], *, which: ColumnElement[bool] | None = None) -> None:
    """An entry (type ``bucket``, under its negated key) in ``repos`` for each bucket ``which`` keeps (all if None)."""
    named = select(Bucket.id, Bucket.name, Account.name).join(Account, Account.id == Bucket.owner_id)
    for bid, name, owner in session.execute(named if which is None else named.where(which)):
        repos[-bid] = RepoUsage(id=-bid, repo_id=f"{owner}/{name}", type="bucket", owner=owner)


def account_repo(db: Database, store: BlobStore, *, repo_pk: int) -> RepoUsage:
    """The figures of the repo ``repo_pk`` (:class:`RepoNotFoundError` if none), equal to
    ``account(db, store).repos[repo_pk]``, reading only its files, the objects they use and the files of other repos
    using those objects."""
    found = _account_some(db, store, repo_pk)
    if repo_pk not in found:
        raise RepoNotFoundError(f"no repo with primary key {repo_pk}")
    return found[repo_pk]


def account_owner(db: Database, store: BlobStore, owner_pk: int) -> dict[int, RepoUsage]:
    """The figures of every repo and bucket of the account ``owner_pk`` (by repo primary key, buckets by their
    negated one; empty if it has none), equal to their entries in ``account(db, store).repos``, reading what
    :func:`account_repo` would for each."""
    return _account_some(db, store, select(Repo.id).where(Repo.owner_id == owner_pk), buckets_of=owner_pk)


def _account_some(
    db: Database, store: BlobStore, pks: int | Select[int], *, buckets_of: int | None = None
) -> dict[int, RepoUsage]:
    """The figures of the repos ``pks`` (one primary key, or a query of them) and of the buckets of the account
    ``buckets_of``, from their files, the objects they use and the files of other repos and buckets using those."""
    blobs = raw_blobs(store)
    which, mine, heads = (
        (Repo.id == pks, Commit.repo_id == pks, Ref.repo_id == pks)
        if isinstance(pks, int)
        else (Repo.id.in_(pks), Commit.repo_id.in_(pks), Ref.repo_id.in_(pks))
    )
    with db.read() as session:
        repos = {
            rid: RepoUsage(id=rid, repo_id=f"{owner}/{name}", type=kind, owner=owner)
            for rid, kind, name, owner in session.execute(
                select(Repo.id, Repo.type, Repo.name, Account.name)
                .join(Account, Account.id == Repo.owner_id)
                .where(which)
            )
        }
        own_buckets = select(Bucket.id).where(Bucket.owner_id == buckets_of)
        if buckets_of is not None:
            _bucket_entries(session, repos, which=Bucket.owner_id == buckets_of)
        if not repos:
            return {}
        own = select(files_reached(_ROOTS.where(mine)).subquery().c.sha256)
        xorbs: Select[Any] | CompoundSelect[Any] = (
            select(XetTerm.xorb_hash)
            .join(XetSha256, XetSha256.file_hash == XetTerm.file_hash)
            .where(XetSha256.sha256.in_(own))
        )
        if buckets_of is not None:  # and the xorbs of the owner's buckets' files
            in_buckets = select(BucketFile.xet_hash).where(BucketFile.bucket_id.in_(own_buckets))
            xorbs = union(xorbs, select(XetTerm.xorb_hash).where(XetTerm.file_hash.in_(in_buckets)))
        sharing = select(XetSha256.sha256).join(XetTerm, XetTerm.file_hash == XetSha256.file_hash)
        sharing = sharing.where(XetTerm.xorb_hash.in_(xorbs))  # files with bytes in these repos' xorbs
        involved = union(own, sharing)
        # as _HISTORY but up from the sha256 index to the root trees holding them, not down every commit's tree
        found_in = holders(involved)
        history = select(Commit.repo_id, found_in.c.sha256, found_in.c.size).distinct()
        files: dict[int, dict[str, int]] = defaultdict(dict)  # these repos' files; other repos' only if ``involved``
        for rid, sha256, size in session.execute(history.join(found_in, found_in.c.tree_id == Commit.tree_id)):
            files[rid][sha256] = size
        logical = {rid: int(total or 0) for rid, total in session.execute(_heads(heads))}
        stored = _stored_blobs(session, blobs, own)
        xorb_sizes, unpacked, deltas = _xorb_sizes(session, Xorb.hash.in_(xorbs))
        xet_files, terms = _links(session, involved, xorbs)
        sharing_buckets: ColumnElement[bool] = BucketFile.xet_hash.in_(
            select(XetTerm.file_hash).where(XetTerm.xorb_hash.in_(xorbs))
        )
        if buckets_of is not None:
            sharing_buckets = or_(sharing_buckets, BucketFile.bucket_id.in_(own_buckets))
        _bucket_files(session, files, logical, xet_files, which=sharing_buckets)  # and buckets sharing objects
    users = _users(files, stored, xet_files, terms)
    theirs = {rid: files.get(rid, {}) for rid in repos}
    sizes = _sizes(stored, xorb_sizes)
    return _attribute(repos, theirs, logical, users, sizes, terms, _sizes(stored, unpacked), deltas=deltas).repos


def _attribute(
    repos: dict[int, RepoUsage],
    files: dict[int, dict[str, int]],
    logical: dict[int, int],
    users: dict[str, set[int]],
    sizes: dict[str, int],
    terms: dict[str, set[str]],
    deduplicated: dict[str, int],
    *,
    deltas: Collection[str] = (),
) -> Accounting:
    """The figures of ``repos``, their owners and the total. ``users`` may name other repos too: they count in the
    split of an object, and get no figures."""
    for rid, repo in repos.items():
        repo.logical_bytes = logical.get(rid, 0)
        repo.files = len(files.get(rid, {}))
        repo.history_bytes = sum(files.get(rid, {}).values())
    owners: dict[str, Usage] = defaultdict(Usage)
    for repo in repos.values():
        owner = owners[repo.owner]
        owner.logical_bytes += repo.logical_bytes
        owner.history_bytes += repo.history_bytes
        owner.files += repo.files
    total = Usage(
        logical_bytes=sum(r.logical_bytes for r in repos.values()),
        history_bytes=sum(r.history_bytes for r in repos.values()),
        files=len({s for repo_files in files.values() for s in repo_files}),
    )
    for key in sorted(users):  # in a fixed order, so that a repo's float sums are the same in account_repo
        using, size = users[key], sizes.get(key, 0)
        unpacked = deduplicated.get(key, size)
        holders = {repos[rid].owner for rid in using if rid in repos}
        for rid in using:
            if rid not in repos:
                continue
            repo = repos[rid]
            repo.physical_bytes += size / len(using)
            repo.deduplicated_bytes += unpacked / len(using)
            repo.delta_bytes += size / len(using) if key in deltas else 0
            if len(using) == 1:
                repo.unique_bytes += size
            else:
                repo.shared_bytes += size
        for name in holders:
            mine = sum(1 for rid in using if rid in repos and repos[rid].owner == name)
            owners[name].physical_bytes += size * mine / len(using)
            owners[name].deduplicated_bytes += unpacked * mine / len(using)
            owners[name].delta_bytes += size * mine / len(using) if key in deltas else 0
            if len(holders) == 1:
                owners[name].unique_bytes += size
            else:
                owners[name].shared_bytes += size
        total.physical_bytes += size
        total.deduplicated_bytes += unpacked
        total.delta_bytes += size if key in deltas else 0
        total.unique_bytes += size if len(using) == 1 else 0
        total.shared_bytes += size if len(using) > 1 else 0
    file_count: dict[str, int] = defaultdict(int)
    for used in terms.values():
        for xorb in used:
            file_count[xorb] += 1
    xorbs = sorted(
        (
            XorbUsage(key[2:], size, file_count.get(key[2:], 0), len(users.get(key, ())))
            for key, size in sizes.items()
            if key.startswith("x:")
        ),
        key=lambda x: (-x.bytes, x.hash),
    )
    stored = sum(sizes.values())
    counts = {
        "repos": sum(1 for r in repos.values() if r.type != "bucket"),
        "buckets": sum(1 for r in repos.values() if r.type == "bucket"),
        "blobs": sum(1 for k in sizes if k.startswith("b:")),
        "xorbs": len(xorbs),
        "sharedXorbs": sum(1 for x in xorbs if x.repos > 1),
        "unusedXorbs": sum(1 for x in xorbs if not x.repos),
    }
    return Accounting(total, dict(owners), repos, xorbs, stored, stored - round(total.physical_bytes), counts)
