"""The upload gate: every file a commit adds is scanned before the commit exists; what its verdict gets follows the
scan rules of the repo's owner and of the hub.

A blob is scanned once per rules version (``scans`` row, keyed by its sha256), from the blob store's own file: the
scanner never reads tensor bytes and never imports or unpickles anything. Malicious files are refused. The others
follow the rules (:mod:`openckpt.hub.services.scan_policy`): by default clean, opaque, "needs code" and inconclusive
files are stored and served, and suspicious ones withheld (downloads refused until the repo's owner or a hub admin
releases them); a policy may withhold or refuse "needs code" files (outside a package allowlist) and inconclusive
ones, and withhold files without a current scan. When the rules version changes, :func:`rescan_stale` (run in the
background by :func:`start_monitor`, or by ``openckpt admin rescan``) brings every verdict up to date; until then a
file's last verdict still counts, and it also counts as unscanned.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from openckpt.errors import FileFlaggedError, ForbiddenError, PolicyViolationError, UnsafeUploadError
from openckpt.governance.scan_rules import ScanRules
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Repo, Scan, ScanRelease, TreeItem, utcnow
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.blob_bytes import GITATTRIBUTES, put_bytes
from openckpt.hub.services.commits import FileChange
from openckpt.hub.services.scan_policy import RepoScanRules, hub_rules, repo_rules
from openckpt.hub.services.trees import FileEntry
from openckpt.hub.settings import Settings
from openckpt.scan.api import scan_file
from openckpt.scan.verdict import Severity, packages_of
from openckpt.store.blobs import BlobStore

__all__ = [
    "FileStatus",
    "check_changes",
    "check_download",
    "may_release",
    "release",
    "rescan_stale",
    "rules_of",
    "rules_version",
    "start_monitor",
    "statuses",
    "verdict_of",
]

log = logging.getLogger("openckpt.hub.gate")
MAX_FINDINGS = 50
"""Findings kept per scan (the most severe first); the verdict counts them all."""
MAX_IMPORTS = 500
"""Imports (and programs) kept per scan: what the repo page and ``securityStatus`` list."""


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
    return Scan(
        sha256=sha256,
        rules_version=version,
        verdict=result.verdict.value,
        completeness=result.completeness.value,
        findings=findings,
        imports=list(result.imports)[:MAX_IMPORTS],
        runs=list(result.runs)[:MAX_IMPORTS],
        scanned_at=utcnow(),
    )


def _save(db: Database, scan: Scan) -> None:
    """Insert or replace the scan row of a blob (a concurrent scan of the same blob may have saved it first)."""
    with contextlib.suppress(SQLIntegrityError), db.write() as session:
        row = session.get(Scan, scan.sha256)
        if row is None:
            session.add(scan)
        else:
            for column in ("rules_version", "verdict", "completeness", "findings", "imports", "runs", "scanned_at"):
                setattr(row, column, getattr(scan, column))


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


OPAQUE_RULES = frozenset({"format-unknown", "pickle-invalid", "pickle-frame-overrun"})
"""Rules of scans made before the ``opaque`` verdict that meant only "no loader reads these bytes": such a scan
(clean, inconclusive by these rules alone) reads as opaque."""


def verdict_of(scan: Scan) -> tuple[str, list[str]]:
    """(the verdict, the imports) of a scan, in the current vocabulary: clean, opaque, needs_code, inconclusive,
    suspicious or malicious. Scans made by older rules (clean or suspicious, complete or inconclusive) are read as
    the nearest current verdict until their rescan: a suspicious scan whose findings all name an import reads as
    "needs code" (the imports it named)."""
    verdict, findings = scan.verdict, scan.findings or []
    imports = list(scan.imports or []) + list(scan.runs or [])
    if verdict == "clean" and scan.completeness == "inconclusive":
        doubts = [f for f in findings if f.get("inconclusive")]
        verdict = "opaque" if all(f.get("rule") in OPAQUE_RULES for f in doubts) else "inconclusive"
    elif verdict == "suspicious" and not imports and scan.completeness == "complete":
        named = [f for f in findings if f.get("severity") != "info"]
        if named and all(f.get("callable") and f.get("rule") in LEGACY_IMPORT_RULES for f in named):
            verdict, imports = "needs_code", sorted({str(f["callable"]) for f in named})
    return verdict, imports


LEGACY_IMPORT_RULES = frozenset({"pickle-global"})
"""Rules of older scans' suspicious findings that only named a global outside the allowlists."""


def _summary(path: str, verdict: str, findings: list[dict[str, Any]], imports: list[str]) -> str:
    """``model.bin: malicious: calls os.system — reason [member@offset]``, naming the worst finding; for a file that
    needs code, the classes loading it constructs."""
    if verdict == "needs_code":
        shown = ", ".join(imports[:8]) + (f" (+{len(imports) - 8} more)" if len(imports) > 8 else "")
        return f"{path}: needs code: loading it imports {shown}" if shown else f"{path}: needs code"
    worst = next((f for f in findings if f.get("severity") != "info" or f.get("inconclusive")), None)
    if worst is None or verdict == "clean":
        return f"{path}: {verdict}"
    where = (worst.get("member") or "") + (f"@{worst['offset']}" if worst.get("offset") is not None else "")
    called = f": calls {worst['callable']}" if worst.get("callable") else ""
    more = f" (+{len(findings) - 1} more findings)" if len(findings) > 1 else ""
    return f"{path}: {verdict}{called} — {worst.get('reason')}" + (f" [{where}]" if where else "") + more


# ---- the gate on commits ----------------------------------------------------------------------------------------


def check_changes(
    db: Database,
    store: BlobStore,
    *,
    settings: Settings,
    changes: Iterable[FileChange],
    copies: Mapping[str, Path] | None = None,
    repo_id: int | None = None,
) -> None:
    """Scan every file ``changes`` add (from ``copies``, verified local copies, where given); raise
    :class:`UnsafeUploadError` naming each malicious file, else :class:`PolicyViolationError` naming each file the
    scan rules of repo ``repo_id`` (its owner's and the hub's; the hub's alone without it) refuse."""
    changes = list(changes)
    added = {c.sha256: c.path for c in changes if c.kind == "add"}
    if not added:
        return
    scans = ensure_scans(db, store, added, rules_version(settings), copies)
    with db.read() as session:
        policy = repo_rules(session, settings, repo_id) if repo_id is not None else None
    rules = policy.rules if policy is not None else hub_rules(settings)
    malicious, refused = [], []
    for change in (c for c in changes if c.kind == "add"):
        scan = scans[change.sha256]
        verdict, imports = verdict_of(scan)
        if verdict == "malicious":
            malicious.append(_summary(change.path, verdict, scan.findings, imports))
        elif rules.action(verdict, packages=packages_of(imports), classes=imports) == "block":
            refused.append(_summary(change.path, verdict, scan.findings, imports) + _outside(rules, verdict, imports))
    if malicious:
        raise UnsafeUploadError(
            "Commit refused: the scanner found files that could run code when loaded: " + "; ".join(malicious)
        )
    if refused:
        whose = policy.whose if policy is not None else "this hub"
        raise PolicyViolationError(f"Commit refused: the scan policy of {whose} refuses " + "; ".join(refused))


def _outside(rules: ScanRules, verdict: str, imports: list[str]) -> str:
    if verdict != "needs_code" or not rules.allowed_packages:
        return ""
    outside = rules.outside(packages_of(imports), imports)
    return f" (packages outside the allowlist: {', '.join(outside)})" if outside else ""


# ---- status of stored files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    """What the scanner says about one file of a repo, and whether its downloads are withheld."""

    path: str
    verdict: str
    """clean, opaque, needs_code, inconclusive, suspicious, malicious, or unscanned (no scan yet)."""
    completeness: str
    findings: list[dict[str, Any]]
    released: bool
    withheld: bool
    current: bool
    """Scanned with the current rules version."""
    imports: list[str] = field(default_factory=list)
    """What loading the file imports or runs beyond its loader's allowlist (``module.qualname``)."""
    reason: str = ""
    """Why the file is withheld (empty when it is not)."""

    @property
    def clean(self) -> bool:
        return self.verdict == "clean"

    @property
    def runs_nothing(self) -> bool:
        """Clean or opaque: loading it executes nothing from it."""
        return self.verdict in ("clean", "opaque")

    @property
    def packages(self) -> list[str]:
        return packages_of(self.imports)

    @property
    def level(self) -> str:
        """The verdict (the repo page's badge)."""
        return self.verdict

    def message(self) -> str:
        if self.verdict == "unscanned":
            return f"{self.path}: not scanned yet"
        return _summary(self.path, self.verdict, self.findings, self.imports)


_KINDS = {"needs_code": "files that need code", "unscanned": "files not scanned yet"}


def _decide(policy: RepoScanRules, verdict: str, imports: list[str], current: bool) -> str:
    """Why a file of ``verdict`` is withheld under ``policy``; empty when it is not."""
    if verdict == "malicious":
        return "the scanner found it malicious"
    rules = policy.rules
    action = rules.action(verdict, packages=packages_of(imports), classes=imports)
    if action != "allow":
        extra = _outside(rules, verdict, imports)
        return f"the scan policy of {policy.whose} withholds {_KINDS.get(verdict, verdict + ' files')}{extra}"
    if not current and rules.unscanned != "allow":
        return f"the scan policy of {policy.whose} withholds files not scanned with the current rules yet"
    return ""


def statuses(
    session: Session, settings: Settings, *, repo_id: int, entries: Iterable[FileEntry]
) -> dict[str, FileStatus]:
    """The scan status of each of ``entries`` (files of one of the repo's trees), by path, under the scan rules of
    the repo's owner and of the hub."""
    entries = list(entries)
    shas = list({e.sha256 for e in entries})
    scans = {s.sha256: s for s in session.scalars(select(Scan).where(Scan.sha256.in_(shas)))} if shas else {}
    version, policy = rules_version(settings), repo_rules(session, settings, repo_id)
    found: dict[str, tuple[str, list[str], str, bool]] = {}
    for e in entries:
        scan = scans.get(e.sha256)
        if scan is None:
            found[e.path] = ("unscanned", [], _decide(policy, "unscanned", [], True), False)
        else:
            verdict, imports = verdict_of(scan)
            current = scan.rules_version == version
            found[e.path] = (verdict, imports, _decide(policy, verdict, imports, current), current)
    held = [e.path for e in entries if found[e.path][2]]
    released: set[tuple[str, str]] = set()
    if held:
        rows = session.execute(
            select(ScanRelease.path, ScanRelease.sha256).where(
                ScanRelease.repo_id == repo_id, ScanRelease.path.in_(held)
            )
        ).tuples()
        released = set(rows)
    out = {}
    for e in entries:
        verdict, imports, reason, current = found[e.path]
        scan = scans.get(e.sha256)
        free = (e.path, e.sha256) in released
        out[e.path] = FileStatus(
            e.path,
            verdict,
            scan.completeness if scan is not None else "inconclusive",
            list(scan.findings) if scan is not None else [],
            free,
            bool(reason) and not free,
            current,
            imports,
            reason if not free else "",
        )
    return out


def rules_of(session: Session, settings: Settings, *, repo: Repo) -> ScanRules:
    """The scan rules that apply to the files of ``repo`` (its owner's and the hub's)."""
    return repo_rules(session, settings, repo).rules


def check_download(session: Session, settings: Settings, *, repo_id: int, entry: FileEntry) -> None:
    """Raise :class:`FileFlaggedError` if ``entry`` is withheld (see :func:`statuses`) and nobody released it in
    this repo."""
    status = statuses(session, settings, repo_id=repo_id, entries=[entry])[entry.path]
    if status.withheld:
        raise FileFlaggedError(
            f"Download refused: {status.reason}: {status.message()}. "
            "The repo's owner or a hub admin can release it after review (POST /api/<type>s/<repo>/scan/release, "
            "or the Release button on the repo page)."
        )


def may_release(principal: Principal | None, repo: Repo) -> bool:
    """Whether the caller may release withheld files of ``repo`` (:func:`release`): signed in with a write token,
    and the repo's owner, an admin of its organisation, or a hub admin."""
    if principal is None or not principal.can_write:
        return False
    owner = principal.account_id == repo.owner_id or principal.orgs.get(repo.owner_id) == "admin"
    return owner or principal.is_admin


def release(db: Database, principal: Principal, *, repo: Repo, entry: FileEntry) -> None:
    """Let downloads of ``entry`` (these bytes at this path) through; for the repo's owner (or org admins) and hub
    admins; malicious files only for hub admins."""
    if not may_release(principal, repo):
        raise ForbiddenError(f"only the owner of {repo.repo_id} or a hub admin can release withheld files")
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
    db: Database,
    store: BlobStore,
    settings: Settings,
    *,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
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
