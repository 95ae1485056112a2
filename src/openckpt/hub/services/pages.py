"""Read-only queries the web pages need beyond the API's: accounts, refs, history, folders, tokens, file contents.

Visibility is decided where repos are found (:func:`openckpt.hub.services.repos.find_repo` and ``list_repos``);
everything here starts from a repo the caller may already see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from openckpt.format.manifest import FORMAT_VERSION, Manifest
from openckpt.hub.db.models import Account, Commit, Membership, Ref, Repo, Token
from openckpt.hub.services.commits import commit_chain
from openckpt.hub.services.trees import FileEntry
from openckpt.store.blobs import BlobStore

__all__ = [
    "Folder",
    "Listing",
    "ManifestPanel",
    "commit_history",
    "find_account",
    "list_refs",
    "list_tokens",
    "load_manifest",
    "memberships",
    "members",
    "read_text",
    "search_accounts",
    "folder_listing",
]

MAX_MANIFEST_BYTES = 16_000_000


def find_account(session: Session, name: str) -> Account | None:
    return session.scalar(select(Account).where(Account.name == name))


def members(session: Session, org: Account, *, offset: int = 0, limit: int | None = None) -> list[tuple[Account, str]]:
    """(user, role) of an organisation, by name: ``limit`` of them (all if None) after ``offset``."""
    rows = session.execute(
        select(Account, Membership.role)
        .join(Membership, Membership.user_id == Account.id)
        .where(Membership.org_id == org.id)
        .order_by(Account.name)
        .offset(offset)
        .limit(limit)
    ).tuples()
    return list(rows)


def memberships(session: Session, user: Account) -> list[Account]:
    """The organisations a user belongs to, by name."""
    rows = session.scalars(
        select(Account)
        .join(Membership, Membership.org_id == Account.id)
        .where(Membership.user_id == user.id)
        .order_by(Account.name)
    )
    return list(rows)


def list_refs(session: Session, repo: Repo) -> tuple[list[tuple[Ref, Commit | None]], list[tuple[Ref, Commit | None]]]:
    """(branches, tags), each as (ref, the commit it points at), by name."""
    refs = session.scalars(select(Ref).where(Ref.repo_id == repo.id).order_by(Ref.name)).all()
    ids = {r.commit_id for r in refs}
    commits = {c.id: c for c in session.scalars(select(Commit).where(Commit.id.in_(ids)))} if ids else {}
    pairs = [(r, commits.get(r.commit_id)) for r in refs]
    return [p for p in pairs if p[0].kind == "branch"], [p for p in pairs if p[0].kind == "tag"]


def commit_history(session: Session, head: Commit, *, offset: int, limit: int) -> tuple[list[Commit], bool]:
    """``limit`` commits of the first-parent chain from ``head`` after ``offset``, and whether more follow."""
    chain = commit_chain(session, head, limit=offset + limit + 1)
    return chain[offset : offset + limit], len(chain) > offset + limit


@dataclass
class Folder:
    path: str
    files: int = 0
    size: int = 0


@dataclass
class Listing:
    """The direct children of a folder of a tree: sub-folders (with their total size) and files."""

    path: str
    folders: list[Folder] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.folders and not self.files


def folder_listing(entries: dict[str, FileEntry], path: str) -> Listing | None:
    """The listing of folder ``path`` (``""`` for the root); None if there is no such folder."""
    prefix = f"{path}/" if path else ""
    listing = Listing(path)
    folders: dict[str, Folder] = {}
    for full, entry in entries.items():
        if not full.startswith(prefix):
            continue
        head, sep, _ = full[len(prefix) :].partition("/")
        if sep:
            folder = folders.setdefault(head, Folder(prefix + head))
            folder.files += 1
            folder.size += entry.size
        else:
            listing.files.append(entry)
    if path and not folders and not listing.files:
        return None
    listing.folders = [folders[k] for k in sorted(folders, key=str.lower)]
    listing.files.sort(key=lambda e: e.path.lower())
    return listing


def list_tokens(session: Session, account_id: int) -> list[Token]:
    """The account's active tokens, newest first."""
    rows = session.scalars(
        select(Token)
        .where(Token.account_id == account_id, Token.revoked_at.is_(None))
        .order_by(Token.created_at.desc(), Token.id.desc())
    )
    return list(rows)


def read_text(store: BlobStore, entry: FileEntry, *, limit: int) -> str | None:
    """The file as text if it is at most ``limit`` bytes and looks like text (UTF-8, no NUL); else None."""
    if entry.size > limit:
        return None
    data = b"".join(store.read(entry.sha256))
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class ManifestPanel:
    """An ``openckpt.json`` of a revision: the parsed manifest, or why it could not be read."""

    manifest: Manifest | None = None
    error: str | None = None


def load_manifest(store: BlobStore, entry: FileEntry) -> ManifestPanel:
    """Parse the manifest blob with the format's own schema."""
    if entry.size > MAX_MANIFEST_BYTES:
        return ManifestPanel(error=f"openckpt.json is larger than {MAX_MANIFEST_BYTES // 1_000_000} MB; not shown")
    data = b"".join(store.read(entry.sha256))
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as e:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": str(e)}
        where = ".".join(str(p) for p in first["loc"]) or "document"
        return ManifestPanel(error=f"openckpt.json is not a valid manifest ({where}: {first['msg']})")
    if manifest.format_version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        return ManifestPanel(error=f"openckpt.json has format version {manifest.format_version}, not {FORMAT_VERSION}")
    return ManifestPanel(manifest)


def search_accounts(session: Session, text: str, *, limit: int) -> list[Account]:
    """Users and organisations whose name or full name contains ``text`` (case-insensitive)."""
    pattern = f"%{text.lower()}%"
    stmt = (
        select(Account)
        .where(or_(func.lower(Account.name).like(pattern), func.lower(Account.fullname).like(pattern)))
        .order_by(Account.name)
        .limit(limit)
    )
    return list(session.scalars(stmt))
