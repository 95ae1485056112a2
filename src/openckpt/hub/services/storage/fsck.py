"""Integrity check of the hub's storage: every row names objects that exist and agree with it.

- every blob row has its store object, of the recorded size (``deep``: and of the recorded sha256), unless Xet
  ingestion replaced the whole copy by a verified Xet file;
- every xorb row has its store object of the recorded size and chunk rows that tile it; ``deep``: the object parses
  (:func:`openckpt.xet.xorb.parse_xorb`) to the xorb's hash and to exactly its chunk rows (a packed one decoded, a
  delta rebuilt from its bases, which must be stored and not deltas);
- every file of every commit is stored (a blob row or a verified Xet file);
- every Xet file's terms name chunks of stored xorbs and add up to its size;
- every recorded part of an unfinished LFS multipart upload has its store object, of the recorded size.

Store objects no row names are counted, not problems: ``openckpt admin gc`` removes them after its grace period.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import literal_column, select
from sqlalchemy.orm import Session

from openckpt.errors import IntegrityError, OpenckptError, XetFormatError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import (
    Account,
    Blob,
    Commit,
    LfsPart,
    Repo,
    XetFile,
    XetSha256,
    XetTerm,
    Xorb,
    XorbChunk,
)
from openckpt.hub.services import compression as storage_compression
from openckpt.hub.services import delta_reads
from openckpt.hub.services.lfs.parts import HEADER_SIZE
from openckpt.hub.services.stored_files import raw_blobs
from openckpt.hub.services.trees import files_reached, holders
from openckpt.store.blobs import BlobStore
from openckpt.xet.hashes import hash_to_hex, hex_to_hash
from openckpt.xet.xorb import parse_xorb

__all__ = ["FsckReport", "Problem", "check"]

Progress = Callable[[str, int, int | None], None]
"""``progress(phase, done, total)``."""


@dataclass(frozen=True)
class Problem:
    """One inconsistency: ``kind`` (missing, size, hash, chunks, dangling), what it is about, and what is wrong."""

    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


@dataclass
class FsckReport:
    deep: bool
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Rows and objects checked, by kind."""
    unreferenced_objects: int = 0
    """Store objects no row names (for ``admin gc``)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, subject: str, detail: str) -> None:
        self.problems.append(Problem(kind, subject, detail))

    def as_dict(self) -> dict[str, Any]:
        problems = [{"kind": p.kind, "subject": p.subject, "detail": p.detail} for p in self.problems]
        return {
            "ok": self.ok,
            "deep": self.deep,
            "checked": dict(self.checked),
            "unreferencedObjects": self.unreferenced_objects,
            "problems": problems,
        }


def _sha256_of(blobs: BlobStore, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in blobs.read(key):
        digest.update(chunk)
    return digest.hexdigest()


def _check_blobs(session: Session, blobs: BlobStore, report: FsckReport, deep: bool, note: Progress) -> None:
    xet_backed = set(session.scalars(select(XetSha256.sha256).where(XetSha256.verified.is_(True))))
    rows = session.execute(select(Blob.sha256, Blob.size)).all()
    for done, (sha256, size) in enumerate(rows):
        note("blobs", done, len(rows))
        report.checked["blobs"] += 1
        subject = f"blob {sha256}"
        stat = blobs.stat(sha256)
        if stat is None:
            if sha256 not in xet_backed:
                report.add("missing", subject, "no store object, and no verified Xet file holds these bytes")
        elif stat.size != size:
            report.add("size", subject, f"store object has {stat.size} bytes, the row says {size}")
        elif deep and (actual := _sha256_of(blobs, sha256)) != sha256:
            report.add("hash", subject, f"store object's bytes hash to {actual}")


def _check_xorb_object(
    session: Session, blobs: BlobStore, row: Xorb, chunks: list[XorbChunk], report: FsckReport
) -> None:
    subject = f"xorb {row.hash}"
    if row.encoding == delta_reads.DELTA:  # rebuilt as served: every frame decoded, its bases XORed back
        try:
            bases = delta_reads.bases_of(session, [row.hash])[row.hash]
            data = b"".join(delta_reads.served(blobs, row.blob_sha256, 0, row.serialized_size, bases=bases, fresh=True))
        except IntegrityError as e:
            report.add("hash", subject, f"delta object does not rebuild: {e}")
            return
    elif row.encoding == storage_compression.PACKED:  # rebuilt as served, from every frame decoded
        try:
            data = b"".join(storage_compression.served(blobs, row.blob_sha256, 0, row.serialized_size, fresh=True))
        except IntegrityError as e:
            report.add("hash", subject, f"packed object does not decode: {e}")
            return
    else:
        data = b"".join(blobs.read(row.blob_sha256))
    try:
        parsed = parse_xorb(data, expected_hash=hex_to_hash(row.hash))
    except XetFormatError as e:
        report.add("hash", subject, f"stored bytes do not parse to this xorb: {e}")
        return
    expected = [(hash_to_hex(c.hash), c.start, c.end, c.size) for c in parsed.chunks]
    recorded = [(c.chunk_hash, c.byte_start, c.byte_end, c.unpacked_size) for c in chunks]
    if expected != recorded:
        report.add("chunks", subject, "chunk rows differ from the chunks of the stored bytes")


def _check_xorbs(session: Session, blobs: BlobStore, report: FsckReport, deep: bool, note: Progress) -> None:
    chunks: dict[str, list[XorbChunk]] = defaultdict(list)
    for chunk in session.scalars(select(XorbChunk).order_by(XorbChunk.xorb_hash, XorbChunk.chunk_index)):
        chunks[chunk.xorb_hash].append(chunk)
    rows = list(session.scalars(select(Xorb)))
    for done, row in enumerate(rows):
        note("xorbs", done, len(rows))
        report.checked["xorbs"] += 1
        subject = f"xorb {row.hash}"
        mine = chunks.get(row.hash, [])
        offsets, position, unpacked = [c.chunk_index for c in mine], 0, 0
        tiled = offsets == list(range(row.num_chunks))
        for c in mine:
            tiled = tiled and c.byte_start == position and c.byte_end > c.byte_start and c.unpacked_offset == unpacked
            position, unpacked = c.byte_end, unpacked + c.unpacked_size
        if not tiled or position != row.serialized_size or unpacked != row.unpacked_size:
            report.add(
                "chunks",
                subject,
                f"{len(mine)} chunk rows do not tile its {row.num_chunks} chunks, "
                f"{row.serialized_size} bytes ({row.unpacked_size} unpacked)",
            )
        stat = blobs.stat(row.blob_sha256)
        if stat is None:
            report.add("missing", subject, f"its store object {row.blob_sha256} is missing")
        elif stat.size != (stored := row.stored_size or row.serialized_size):
            report.add("size", subject, f"store object has {stat.size} bytes, the row says {stored}")
        elif deep:
            try:
                _check_xorb_object(session, blobs, row, mine, report)
            except OpenckptError as e:
                report.add("missing", subject, f"its store object cannot be read: {e}")


def _check_xet_files(session: Session, report: FsckReport) -> None:
    chunk_counts = dict(session.execute(select(Xorb.hash, Xorb.num_chunks)).all())
    terms: dict[str, list[XetTerm]] = defaultdict(list)
    for term in session.scalars(select(XetTerm).order_by(XetTerm.file_hash, XetTerm.term_index)):
        terms[term.file_hash].append(term)
    for row in session.scalars(select(XetFile)):
        report.checked["xet_files"] += 1
        subject = f"Xet file {row.hash}"
        mine = terms.get(row.hash, [])
        if len(mine) != row.num_terms or sum(t.size for t in mine) != row.size:
            report.add(
                "chunks",
                subject,
                f"{len(mine)} terms of {sum(t.size for t in mine)} bytes, "
                f"the row says {row.num_terms} terms of {row.size} bytes",
            )
        for t in mine:
            held = chunk_counts.get(t.xorb_hash)
            if held is None:
                report.add("dangling", subject, f"term {t.term_index} names xorb {t.xorb_hash}, which is not stored")
            elif not 0 <= t.chunk_start < t.chunk_end <= held:
                report.add(
                    "dangling",
                    subject,
                    f"term {t.term_index} names chunks [{t.chunk_start}, {t.chunk_end}) "
                    f"of xorb {t.xorb_hash}, which has {held}",
                )


def _check_commits(session: Session, report: FsckReport) -> None:
    stored = set(session.scalars(select(Blob.sha256)))
    stored.update(
        session.scalars(
            select(XetSha256.sha256)
            .join(XetFile, XetFile.hash == XetSha256.file_hash)
            .where(XetSha256.verified.is_(True))
        )
    )
    files = files_reached(select(literal_column("0").label("key"), Commit.tree_id.label("tree_id"))).subquery()
    missing: set[str] = set()
    for sha256 in session.scalars(select(files.c.sha256)):  # each file of each tree any commit reaches, once
        report.checked["commit_files"] += 1
        if sha256 not in stored:
            missing.add(sha256)
    if not missing:
        return
    found = holders(sorted(missing))  # up from the files to the commits naming them
    rows = session.execute(
        select(found.c.sha256, found.c.path, Commit.id, Account.name + "/" + Repo.name, Repo.type)
        .join(Commit, Commit.tree_id == found.c.tree_id)
        .join(Repo, Repo.id == Commit.repo_id)
        .join(Account, Account.id == Repo.owner_id)
    )
    for sha256, path, commit, repo, kind in rows:
        if sha256 in missing:
            missing.discard(sha256)
            report.add(
                "dangling",
                f"file {sha256}",
                f"{kind} {repo!r} commit {commit[:12]} names it at {path!r}, "
                "but it is neither a blob nor a verified Xet file",
            )


def _check_parts(session: Session, blobs: BlobStore, report: FsckReport) -> None:
    for row in session.scalars(select(LfsPart)):
        report.checked["lfs_parts"] += 1
        subject, stat = f"LFS part {row.number} of {row.sha256}", blobs.stat(row.part_sha256)
        if stat is None:
            report.add("missing", subject, f"its store object {row.part_sha256} is missing")
        elif stat.size != HEADER_SIZE + row.part_size:
            report.add(
                "size",
                subject,
                f"store object has {stat.size} bytes, the row says {row.part_size} after a {HEADER_SIZE}-byte header",
            )


def check(db: Database, store: BlobStore, *, deep: bool = False, progress: Progress | None = None) -> FsckReport:
    """Check every row against the store and against the rows it names (see the module); ``deep`` reads every
    object back and re-hashes it."""
    note = progress or (lambda phase, done, total: None)
    blobs = raw_blobs(store)
    report = FsckReport(deep)
    with db.read() as session:
        _check_blobs(session, blobs, report, deep, note)
        _check_xorbs(session, blobs, report, deep, note)
        _check_xet_files(session, report)
        _check_commits(session, report)
        _check_parts(session, blobs, report)
        named = set(session.scalars(select(Blob.sha256)))
        named.update(session.scalars(select(Xorb.blob_sha256)))
        named.update(session.scalars(select(LfsPart.part_sha256)))
    note("store", 0, None)
    report.unreferenced_objects = sum(1 for key in blobs.keys() if key not in named)  # noqa: SIM118 - a store
    return report
