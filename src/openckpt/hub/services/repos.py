"""Repos: create, find (respecting visibility), list and search, settings, delete, branches and tags.

A repo starts on :data:`DEFAULT_BRANCH` (``main``); its owner may make another existing branch the default one
(``Repo.default_branch``). The default branch is what the web pages show, what ``model_info`` without a revision
and the card data follow, and it cannot be deleted. Clients that name a revision, as huggingface_hub always does
(``main`` when given none), get the revision they name.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, bindparam, delete, func, or_, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session, contains_eager, joinedload

from openckpt.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    RepoMovedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Commit, Ref, Repo, utcnow
from openckpt.hub.services import governance, redirects
from openckpt.hub.services.accounts import Principal, may_read
from openckpt.hub.services.blob_bytes import GITATTRIBUTES, put_bytes, record_blob, store_bytes
from openckpt.hub.services.cards import derive_metadata, validate_card
from openckpt.hub.services.commits import _commit_id, resolve_revision
from openckpt.hub.services.names import REPO_TYPES, check_name, check_ref_name
from openckpt.hub.services.tree_writes import store_files
from openckpt.hub.services.trees import FileEntry, read_tree
from openckpt.hub.services.webhooks.delivery import Deliveries, RefUpdate, repo_event
from openckpt.store.blobs import BlobStore

__all__ = [
    "DEFAULT_BRANCH",
    "ListQuery",
    "check_free",
    "create_ref",
    "create_repo",
    "delete_ref",
    "delete_repo",
    "find_repo",
    "list_refs",
    "insert_repo_row",
    "is_default_branch",
    "list_repos",
    "namespace_of",
    "put_bytes",
    "record_blob",
    "refresh_metadata",
    "refresh_metadata_of",
    "store_bytes",
    "update_settings",
]

DEFAULT_BRANCH = "main"
"""The branch a new repo starts with (and the default branch until its owner picks another)."""


def check_type(repo_type: str) -> str:
    if repo_type not in REPO_TYPES:
        raise BadRequestError(f"invalid repo type {repo_type!r}: one of {', '.join(REPO_TYPES)}")
    return repo_type


_REPO_BY_NAME = (
    select(Repo)
    .join(Account, Repo.owner_id == Account.id)
    .where(Repo.type == bindparam("type"), Account.name == bindparam("owner"), Repo.name == bindparam("name"))
    .options(contains_eager(Repo.owner))
)


def repo_named(session: Session, repo_type: str, *, repo_id: str) -> Repo | None:
    """The repo of that name, whoever may see it (for the hub's own bookkeeping, never for a caller's read)."""
    owner, _, name = repo_id.partition("/")
    return session.scalar(_REPO_BY_NAME, {"type": check_type(repo_type), "owner": owner, "name": name})


def find_repo(
    session: Session, principal: Principal | None, *, repo_type: str, repo_id: str, write: bool = False
) -> Repo:
    """The repo, if the caller may see it (else :class:`RepoNotFoundError`, as if it did not exist) and, with
    ``write``, may write to it (else :class:`ForbiddenError`). An old name of a repo the caller may see raises
    :class:`RepoMovedError`."""
    owner, _, name = repo_id.partition("/")
    repo = session.scalar(_REPO_BY_NAME, {"type": check_type(repo_type), "owner": owner, "name": name})
    moved = redirects.follow(session, repo_type, owner, name) if repo is None else None
    if moved is not None and may_read(principal, moved):  # else the old name is as absent as the invisible repo
        raise RepoMovedError(
            f"Repository {repo_id} was moved to {moved.repo_id}: use its new name", old_id=repo_id, new_id=moved.repo_id
        )
    if repo is None or not may_read(principal, repo):
        raise RepoNotFoundError(
            f"Repository Not Found for url: {repo_type} {repo_id}. Please make sure you specified "
            "the correct `repo_id` and `repo_type`. If you are trying to access a private or gated "
            "repo, make sure you are authenticated."
        )
    if write and (principal is None or not principal.may_write(repo)):
        raise ForbiddenError(
            f"You don't have write access to {repo_id}"
            + ("" if principal is None or principal.can_write else ": this token is read-only")
        )
    return repo


def create_repo(
    db: Database, store: BlobStore, *, principal: Principal, repo_type: str, name: str, owner: str | None, private: bool
) -> Repo:
    """A new repo with an initial commit holding ``.gitattributes`` on ``main``, as the Hub creates it."""
    check_type(repo_type)
    check_name(name, "repo name")
    owner_name = check_name(owner or principal.name, "namespace")
    if not principal.can_write:
        raise ForbiddenError(f"This token is read-only: it cannot create a {repo_type} repo")
    for attempt in range(3):
        try:
            return _insert_repo(db, store, principal, repo_type, name, owner_name, private)
        except SQLIntegrityError:  # a concurrent create of this repo, or of the same shared initial tree: look again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def namespace_of(session: Session, principal: Principal, repo_type: str, owner_name: str) -> Account:
    """The account ``owner_name`` if the caller may create repos in it, else :class:`ForbiddenError`."""
    account = session.scalar(select(Account).where(Account.name == owner_name))
    if account is None or not principal.may_write_to(account.id):
        raise ForbiddenError(f"You don't have the rights to create a {repo_type} under the namespace {owner_name!r}")
    return account


def check_free(session: Session, repo_type: str, account: Account, name: str) -> None:
    """:class:`ConflictError` if ``account`` has a ``repo_type`` repo named ``name``."""
    exists = session.scalar(
        select(Repo.id).where(Repo.type == repo_type, Repo.owner_id == account.id, Repo.name == name)
    )
    if exists is not None:
        raise ConflictError(f"You already created this {repo_type} repo: {account.name}/{name}")


def insert_repo_row(
    session: Session, principal: Principal, repo_type: str, name: str, owner_name: str, private: bool
) -> Repo:
    """Add the row of a new repo without commits or refs (flushed, so it has its id): :class:`ForbiddenError`
    without the right to create repos in ``owner_name``, :class:`ConflictError` if the name is taken."""
    account = namespace_of(session, principal, repo_type, owner_name)
    check_free(session, repo_type, account, name)
    redirects.forget(session, repo_type, account.id, name)  # a new repo takes the name over from a moved one
    repo = Repo(type=repo_type, owner_id=account.id, name=name, private=private, owner=account)
    session.add(repo)
    session.flush()
    return repo


def _insert_repo(
    db: Database, store: BlobStore, principal: Principal, repo_type: str, name: str, owner_name: str, private: bool
) -> Repo:
    with db.write() as session:
        repo = insert_repo_row(session, principal, repo_type, name, owner_name, private)
        sha256, oid = store_bytes(store, session, GITATTRIBUTES)
        tree_id = store_files(session, [FileEntry(".gitattributes", sha256, oid, len(GITATTRIBUTES), False)])
        now = utcnow()
        commit_id = _commit_id(repo.id, None, tree_id, principal.name, "initial commit", "", now)
        initial = Commit(id=commit_id, repo_id=repo.id, tree_id=tree_id, title="initial commit", author=principal.name)
        initial.created_at = now
        session.add(initial)
        session.add(Ref(repo_id=repo.id, kind="branch", name=DEFAULT_BRANCH, commit_id=commit_id))
    return repo


def delete_repo(db: Database, principal: Principal, *, repo_type: str, repo_id: str) -> Repo:
    """Delete the repo; return its row as it was (detached)."""
    with db.write() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=True)
        for table in (Ref, Commit):
            session.execute(delete(table).where(table.repo_id == repo.id))
        session.delete(repo)
    return repo


def update_settings(
    db: Database,
    principal: Principal,
    *,
    repo_type: str,
    repo_id: str,
    private: bool | None,
    gated: str | bool | None,
    default_branch: str | None = None,
    store: BlobStore | None = None,
) -> Repo:
    """Change the repo's visibility, gating and default branch (an existing branch; with ``store``, the card data
    are read again from its head); return its row."""
    with db.write() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=True)
        if private is not None:
            repo.private = private
        if gated is not None:
            if gated not in (False, "auto", "manual"):
                raise BadRequestError("gated must be 'auto', 'manual' or false")
            repo.gated = gated if isinstance(gated, str) else None
        if default_branch is not None and default_branch != repo.default_branch:
            if session.get(Ref, (repo.id, "branch", default_branch)) is None:
                raise BadRequestError(f"{repo_id} has no branch {default_branch!r}: create it first")
            repo.default_branch = default_branch
            if store is not None:
                refresh_metadata_of(session, store, repo)
    return repo


def is_default_branch(db: Database, repo_id: int, ref: str | None) -> bool:
    """Whether ``ref`` (a branch name, or ``refs/heads/NAME``) is the default branch of the repo ``repo_id``."""
    if ref is None:
        return False
    with db.read() as session:
        current = session.scalar(select(Repo.default_branch).where(Repo.id == repo_id))
    return current is not None and ref.removeprefix("refs/heads/") == current


def create_ref(  # noqa: PLR0913 — the repo, the ref (kind, name, start, tag message) and its events: each distinct
    db: Database,
    principal: Principal,
    *,
    repo_type: str,
    repo_id: str,
    kind: str,
    name: str,
    start: str | None,
    message: str | None = None,
    events: Deliveries | None = None,
) -> tuple[Repo, str]:
    """Create a branch or tag at ``start`` (default: the default branch's head), and its ``repo.content`` webhook
    event in the same transaction; return the repo and the commit."""
    check_ref_name(name, kind)
    with db.write() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=True)
        if session.get(Ref, (repo.id, kind, name)) is not None:
            raise ConflictError(f"{kind.capitalize()} {name!r} already exists")
        commit = resolve_revision(session, repo, rev=start or repo.default_branch)
        session.add(Ref(repo_id=repo.id, kind=kind, name=name, commit_id=commit.id, message=message))
        _announce_ref(session, events, repo, kind, name, None, commit.id)
    if events is not None:
        events.wake()
    return repo, commit.id


def delete_ref(
    db: Database,
    principal: Principal,
    *,
    repo_type: str,
    repo_id: str,
    kind: str,
    name: str,
    events: Deliveries | None = None,
) -> tuple[Repo, str]:
    """Delete a branch (not the default one) or tag, and write its ``repo.content`` webhook event in the same
    transaction; return the repo and the commit it pointed at."""
    with db.write() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=True)
        ref = session.get(Ref, (repo.id, kind, name))
        if ref is None:
            raise RevisionNotFoundError(f"Invalid rev id: {name}")
        if kind == "branch" and name == repo.default_branch:
            raise BadRequestError("the default branch cannot be deleted: make another branch the default first")
        session.delete(ref)
        _announce_ref(session, events, repo, kind, name, ref.commit_id, None)
    if events is not None:
        events.wake()
    return repo, ref.commit_id


_REF_PREFIX = {"branch": "refs/heads/", "tag": "refs/tags/"}


def _announce_ref(
    session: Session, events: Deliveries | None, repo: Repo, kind: str, name: str, old: str | None, new: str | None
) -> None:
    """The ``repo.content`` event of a branch or tag made (``old`` None) or deleted (``new`` None), written in
    ``session`` (the transaction doing it)."""
    if events is None:
        return
    update = RefUpdate(_REF_PREFIX[kind] + name, old, new)
    events.enqueue(session, repo_event(repo, "update", scope="repo.content", updated_refs=(update,)))


def list_refs(db: Database, principal: Principal | None, *, repo_type: str, repo_id: str) -> list[Ref]:
    """The branches, tags and pull request refs of a repo the caller sees, by name (not a mirror's own state,
    ``services/mirror/cache.py``)."""
    with db.read() as session:
        repo = find_repo(session, principal, repo_type=repo_type, repo_id=repo_id)
        mine = (Ref.repo_id == repo.id) & (Ref.kind != "mirror")
        return list(session.scalars(select(Ref).where(mine).order_by(Ref.name)))


def refresh_metadata(db: Database, store: BlobStore, *, repo_id: int) -> None:
    """Recompute card data and tags from the default branch's README.md and file list."""
    with db.write() as session:
        repo = session.get(Repo, repo_id)
        if repo is not None:
            refresh_metadata_of(session, store, repo)


def refresh_metadata_of(session: Session, store: BlobStore, repo: Repo) -> None:
    """:func:`refresh_metadata` inside the caller's write transaction."""
    try:
        head = resolve_revision(session, repo, rev=repo.default_branch)
    except RevisionNotFoundError:
        return
    entries = read_tree(session, head.tree_id)
    readme = entries.get("README.md")
    card: dict[str, object] = {}
    if readme is not None and readme.size <= 1 << 20:
        text = b"".join(store.read(readme.sha256)).decode("utf-8", errors="replace")
        card = validate_card(text)[0]
    repo.card_data = card
    repo.tags, repo.pipeline_tag, repo.library_name = derive_metadata(card, list(entries))
    governance.refresh_lineage(session, store, repo, head, entries)  # the model tree


@dataclass(frozen=True)
class ListQuery:
    search: str | None = None
    author: str | None = None
    filters: tuple[str, ...] = ()
    sort: str | None = None
    descending: bool = True
    limit: int = 1000
    offset: int = 0


_SORT = {
    "lastModified": Repo.last_modified,
    "last_modified": Repo.last_modified,
    "createdAt": Repo.created_at,
    "created_at": Repo.created_at,
    "downloads": Repo.downloads,
    "likes": Repo.likes,
    "trendingScore": Repo.downloads,
    "id": Repo.name,
}


def list_repos(session: Session, principal: Principal | None, *, repo_type: str, query: ListQuery) -> list[Repo]:
    """Repos the caller may see, filtered, sorted and paged."""
    stmt: Select[Repo] = (
        select(Repo)
        .join(Account, Repo.owner_id == Account.id)
        .where(Repo.type == check_type(repo_type))
        .options(joinedload(Repo.owner))
    )
    if principal is None:
        stmt = stmt.where(Repo.private.is_(False))
    elif not principal.is_admin:
        owners = [principal.account_id, *principal.orgs]
        stmt = stmt.where(or_(Repo.private.is_(False), Repo.owner_id.in_(owners)))
    if query.author:
        stmt = stmt.where(Account.name == query.author)
    if query.search:
        stmt = stmt.where(func.lower(Account.name + "/" + Repo.name).contains(query.search.lower(), autoescape=True))
    order = _SORT.get(query.sort or "", Repo.id if query.sort is None else None)
    if order is None:
        raise BadRequestError(f"cannot sort by {query.sort!r}")
    stmt = stmt.order_by(order.desc() if query.descending and query.sort else order.asc(), Repo.id)
    if not query.filters:
        return list(session.scalars(stmt.offset(query.offset).limit(query.limit)))
    # tags live in JSON: filter in Python, portable across SQLite and PostgreSQL
    wanted = set(query.filters)
    repos = [r for r in session.scalars(stmt) if wanted <= {*r.tags, r.library_name, r.pipeline_tag}]
    return repos[query.offset : query.offset + query.limit]
