"""The upload gate: every file a commit adds is scanned before the commit exists, and flagged files stay withheld.

A blob is scanned once per rules version (``scans`` row, keyed by its sha256), from the blob store's own file: the
scanner never reads tensor bytes and never imports or unpickles anything. Malicious files are refused; suspicious
and inconclusive ones follow the hub's ``scan_policy`` (``flag``: stored, downloads refused until the repo's owner
or an admin releases them; ``block``: refused; ``allow``). When the rules version changes, :func:`rescan_stale`
(run in the background by :func:`start_monitor`, or by ``openckpt admin rescan``) brings every verdict up to date.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from openckpt.errors import FileFlaggedError, ForbiddenError, UnsafeUploadError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Repo, Scan, ScanRelease, TreeItem, utcnow
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import FileChange
from openckpt.hub.services.trees import FileEntry
from openckpt.hub.settings import Settings
from openckpt.scan.api import scan_file
from openckpt.scan.verdict import Severity
from openckpt.store.blobs import BlobStore

__all__ = [
    "FileStatus",
    "check_changes",
    "check_download",
    "release",
    "rescan_stale",
    "rules_version",
    "start_monitor",
    "statuses",
]

log = logging.getLogger("openckpt.hub.gate")
MAX_FINDINGS = 50
"""Findings kept per scan (the most severe first); the verdict counts them all."""


def rules_version(settings: Settings) -> str:
    from openckpt.scan import RULES_VERSION

    return settings.scan_rules_version or RULES_VERSION


# ---- scanning blobs ---------------------------------------------------------------------------------------------


def _scan_blob(store: BlobStore, sha256: str, name: str, version: str, copy: Path | None = None) -> Scan:
    """Scan the stored bytes of ``sha256``: from ``copy`` (a verified local copy) or the store's own file, else from a
    temporary copy (remote stores, Xet files)."""
    local = copy or store.local_path(sha256)
    if local is not None:
        result = scan_file(local)
    else:
        with tempfile.NamedTemporaryFile(prefix="openckpt-scan-") as tmp:
            for chunk in store.read(sha256):
                tmp.write(chunk)
            tmp.flush()
            result = scan_file(tmp.name)
    kept = [f for f in result.findings if f.severity > Severity.INFO or f.inconclusive] or result.findings
    kept.sort(key=lambda f: (-f.severity, not f.inconclusive))
    findings = [{k: v for k, v in f.to_dict().items() if k != "file"} for f in kept[:MAX_FINDINGS]]
    return Scan(sha256=sha256, rules_version=version, verdict=result.verdict.value,
                completeness=result.completeness.value, findings=findings, scanned_at=utcnow())  # fmt: skip


def _save(db: Database, scan: Scan) -> None:
    """Insert or replace the scan row of a blob (a concurrent scan of the same blob may have saved it first)."""
    with contextlib.suppress(SQLIntegrityError), db.write() as session:
        row = session.get(Scan, scan.sha256)
        if row is None:
            session.add(scan)
        else:
            row.rules_version, row.verdict, row.completeness = scan.rules_version, scan.verdict, scan.completeness
            row.findings, row.scanned_at = scan.findings, scan.scanned_at


def ensure_scans(
    db: Database, store: BlobStore, blobs: Mapping[str, str], version: str, copies: Mapping[str, Path] | None = None
) -> dict[str, Scan]:
    """The scan of each blob (sha256 → a path naming it), made now unless one of ``version`` is recorded; ``copies``
    are verified local copies of some of them (sha256 → file) to scan instead of the store's bytes."""
    with db.read() as session:
        found = {s.sha256: s for s in session.scalars(select(Scan).where(Scan.sha256.in_(list(blobs))))}
    for sha256, name in blobs.items():
        if sha256 not in found or found[sha256].rules_version != version:
            found[sha256] = _scan_blob(store, sha256, name, version, (copies or {}).get(sha256))
            _save(db, found[sha256])
    return found


def _clean(scan: Scan) -> bool:
    return scan.verdict == "clean" and scan.completeness == "complete"


OPAQUE_RULES = frozenset({"format-unknown", "pickle-invalid", "pickle-frame-overrun"})
"""Inconclusive only because no loader reads the bytes (an empty file, an unknown binary, random bytes that start
like a pickle and break off): with a clean verdict nothing was imported, so no loader can run code from the file.
A FRAME longer than the data stops the C unpickler; the scanner reads on past it as a lenient unpickler would, so a
clean verdict covers those bytes too. The policy does not hold such files back; they still show as inconclusive."""


def _held(scan: Scan) -> bool:
    """Whether the policy applies: not clean, for a reason other than being opaque."""
    if _clean(scan):
        return False
    return scan.verdict != "clean" or any(
        f.get("inconclusive") and f.get("rule") not in OPAQUE_RULES for f in scan.findings
    )


def _summary(path: str, verdict: str, completeness: str, findings: list[dict[str, Any]]) -> str:
    """``model.bin: malicious: calls os.system — reason [member@offset]``, naming the worst finding."""
    state = verdict + (", inconclusive" if completeness == "inconclusive" else "")
    worst = next((f for f in findings if f.get("severity") != "info" or f.get("inconclusive")), None)
    if worst is None:
        return f"{path}: {state}"
    where = (worst.get("member") or "") + (f"@{worst['offset']}" if worst.get("offset") is not None else "")
    called = f" calls {worst['callable']}" if worst.get("callable") else ""
    more = f" (+{len(findings) - 1} more findings)" if len(findings) > 1 else ""
    return f"{path}: {state}:{called} — {worst.get('reason')}" + (f" [{where}]" if where else "") + more


# ---- the gate on commits ----------------------------------------------------------------------------------------


def check_changes(
    db: Database,
    store: BlobStore,
    settings: Settings,
    changes: Iterable[FileChange],
    copies: Mapping[str, Path] | None = None,
) -> None:
    """Scan every file ``changes`` add (from ``copies``, verified local copies, where given); raise
    :class:`UnsafeUploadError` naming each refused file."""
    added = {c.sha256: c.path for c in changes if c.kind == "add"}
    if not added:
        return
    scans = ensure_scans(db, store, added, rules_version(settings), copies)
    refused = []
    for change in changes:
        if change.kind != "add":
            continue
        scan = scans[change.sha256]
        if scan.verdict == "malicious" or (settings.scan_policy == "block" and _held(scan)):
            refused.append(_summary(change.path, scan.verdict, scan.completeness, scan.findings))
    if refused:
        policy = "" if settings.scan_policy != "block" else " (this hub refuses suspicious and inconclusive files)"
        raise UnsafeUploadError(f"Commit refused: the scanner found files that could run code when loaded{policy}: "
                                + "; ".join(refused))  # fmt: skip


# ---- status of stored files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    """What the scanner says about one file of a repo, and whether its downloads are withheld."""

    path: str
    verdict: str  # clean | suspicious | malicious | unscanned
    completeness: str
    findings: list[dict[str, Any]]
    released: bool
    withheld: bool
    current: bool
    """Scanned with the current rules version."""

    @property
    def clean(self) -> bool:
        return self.verdict == "clean" and self.completeness == "complete"

    @property
    def level(self) -> str:
        """``clean``, ``suspicious``, ``malicious``, ``inconclusive`` (clean but partial) or ``unscanned``."""
        return "inconclusive" if self.verdict == "clean" and self.completeness == "inconclusive" else self.verdict

    def message(self) -> str:
        if self.verdict == "unscanned":
            return f"{self.path}: not scanned yet"
        return _summary(self.path, self.verdict, self.completeness, self.findings)


def _withheld(policy: str, scan: Scan | None, released: bool) -> bool:
    if scan is None or released or not _held(scan):
        return False
    return scan.verdict == "malicious" or policy != "allow"


def statuses(session: Session, settings: Settings, repo_id: int, entries: Iterable[FileEntry]) -> dict[str, FileStatus]:
    """The scan status of each of ``entries`` (files of one of the repo's trees), by path."""
    entries = list(entries)
    shas = list({e.sha256 for e in entries})
    scans = {s.sha256: s for s in session.scalars(select(Scan).where(Scan.sha256.in_(shas)))} if shas else {}
    paths = [e.path for e in entries if e.sha256 in scans and not _clean(scans[e.sha256])]
    released: set[tuple[str, str]] = set()
    if paths:
        rows = session.execute(select(ScanRelease.path, ScanRelease.sha256).where(
            ScanRelease.repo_id == repo_id, ScanRelease.path.in_(paths))).tuples()  # fmt: skip
        released = set(rows)
    version, out = rules_version(settings), {}
    for e in entries:
        scan = scans.get(e.sha256)
        free = (e.path, e.sha256) in released
        if scan is None:
            out[e.path] = FileStatus(e.path, "unscanned", "inconclusive", [], free, False, False)
        else:
            withheld = _withheld(settings.scan_policy, scan, free)
            current = scan.rules_version == version
            findings = list(scan.findings)
            out[e.path] = FileStatus(e.path, scan.verdict, scan.completeness, findings, free, withheld, current)
    return out


def check_download(session: Session, settings: Settings, repo_id: int, entry: FileEntry) -> None:
    """Raise :class:`FileFlaggedError` if the scanner flagged ``entry`` and nobody released it in this repo."""
    status = statuses(session, settings, repo_id, [entry])[entry.path]
    if status.withheld:
        raise FileFlaggedError(
            f"Download refused: the hub's scanner flagged {status.message()}. Loading this file could run code. "
            "The repo's owner or a hub admin can release it after review (POST /api/<type>s/<repo>/scan/release, "
            "or the Release button on the repo page)."
        )


def release(db: Database, principal: Principal, repo: Repo, entry: FileEntry) -> None:
    """Let downloads of ``entry`` (these bytes at this path) through; for the repo's owner (or org admins) and hub
    admins; malicious files only for hub admins."""
    owner = principal.account_id == repo.owner_id or principal.orgs.get(repo.owner_id) == "admin"
    if not principal.can_write or not (owner or principal.is_admin):
        raise ForbiddenError(f"only the owner of {repo.repo_id} or a hub admin can release flagged files")
    with db.write() as session:
        scan = session.get(Scan, entry.sha256)
        if scan is not None and scan.verdict == "malicious" and not principal.is_admin:
            raise ForbiddenError(f"{entry.path} is malicious: only a hub admin can release it")
        if session.get(ScanRelease, (repo.id, entry.path, entry.sha256)) is None:
            session.add(ScanRelease(repo_id=repo.id, path=entry.path, sha256=entry.sha256, released_by=principal.name))


# ---- continuous monitoring --------------------------------------------------------------------------------------


def stale_blobs(session: Session, version: str) -> list[tuple[str, str]]:
    """(sha256, a path naming it) of every stored file not yet scanned with ``version``."""
    stmt = (
        select(TreeItem.sha256, TreeItem.name)  # the file's name: enough to tell its format
        .where(TreeItem.subtree.is_(None))
        .outerjoin(Scan, Scan.sha256 == TreeItem.sha256)
        .where(or_(Scan.sha256.is_(None), Scan.rules_version != version))
    )
    return list(dict(session.execute(stmt).tuples().all()).items())


def rescan_stale(
    db: Database, store: BlobStore, settings: Settings, *, progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> int:  # fmt: skip
    """Rescan, one at a time, every stored file whose scan predates the current rules; return how many."""
    version = rules_version(settings)
    with db.read() as session:
        todo = stale_blobs(session, version)
    for done, (sha256, path) in enumerate(todo, 1):
        if stop is not None and stop.is_set():
            return done - 1
        if store.exists(sha256):
            _save(db, _scan_blob(store, sha256, path, version))
        if progress is not None:
            progress(done, len(todo))
    return len(todo)


def start_monitor(db: Database, store: BlobStore, settings: Settings) -> threading.Event | None:
    """In one process of the hub (a lock in the data dir), rescan stale files in a background thread.

    First, in every process, scan the ``.gitattributes`` every new repo starts with (repos are created without a
    commit through the gate), so that fresh repos count as fully scanned.
    """
    from openckpt.hub.services.repos import GITATTRIBUTES, put_bytes

    ensure_scans(db, store, {put_bytes(store, GITATTRIBUTES): ".gitattributes"}, rules_version(settings))
    if not settings.scan_monitor:
        return None
    lock_path = Path(settings.data_dir) / "scan-monitor.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # another worker monitors
    stop = threading.Event()

    def run() -> None:
        try:
            count = rescan_stale(db, store, settings, stop=stop)
            if count:
                log.info("rescanned %d stored files with rules version %s", count, rules_version(settings))
        except Exception:
            log.exception("background rescan failed")
        finally:
            os.close(fd)

    threading.Thread(target=run, name="openckpt-rescan", daemon=True).start()
    return stop
