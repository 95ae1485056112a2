"""What a client asks before it moves bytes: which files of a revision exist (``preupload``), which objects it need
not send (the LFS batch API), whether an upload is stored and its own (LFS ``verify``), and which repo a Xet token
may be issued for.

Storage is shared by sha256, so an object counts as stored for a caller only if they have it (``possession``):
anything else is asked for again, exactly as if the hub lacked it.
"""

from __future__ import annotations

from openckpt.hub.db.engine import Database
from openckpt.hub.services import access, possession, pull_requests, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commits import pr_num, resolve_revision
from openckpt.hub.services.storage import gc as storage_gc
from openckpt.hub.services.stored_files import xet_files
from openckpt.hub.services.trees import FileEntry, lookup, read_tree
from openckpt.store.blobs import is_sha256

__all__ = ["existing_files", "stored_for_batch", "verified_size", "xet_token_repo"]

MANY = 50
"""From this many paths on, the whole tree is read at once rather than each path's folders."""


def existing_files(
    db: Database,
    principal: Principal,
    *,
    repo_type: str,
    repo_id: str,
    revision: str,
    paths: list[str],
    proposing: bool,
) -> dict[str, FileEntry]:
    """The files at ``paths`` of ``revision``, once the caller may upload to the repo (as a writer, or ``proposing``
    files for a pull request)."""
    with db.read() as session:
        repo = pull_requests.find_uploadable(session, principal, repo_type, repo_id, proposing=proposing)
        root = resolve_revision(session, repo, rev=revision).tree_id
        if len(paths) > MANY:
            return read_tree(session, root)
        steps: dict[tuple[str, str], object] = {}
        found = {p: lookup(session, root, path=p, cache=steps) for p in dict.fromkeys(paths)}
        return {p: e for p, e in found.items() if isinstance(e, FileEntry)}


def stored_for_batch(
    db: Database,
    principal: Principal,
    *,
    repo_type: str,
    repo_id: str,
    oids: list[str],
    write: bool,
    proposing: bool = False,
) -> dict[str, int]:
    """Sizes of the objects among ``oids`` already stored that the caller has, once the caller may read (or ``write``,
    or ``proposing``: upload the files of a pull request to) the repo. For an upload, the collector keeps them until
    the commit naming them."""
    with db.read() as session:
        if write and proposing:
            pull_requests.find_uploadable(session, principal, repo_type, repo_id, proposing=True)
        else:
            repos.find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=write)
        stored = possession.stored_sizes(session, principal, oids)
        files = [file_hash for file_hash, _ in xet_files(session, stored).values()]
    if write and stored:  # the client will commit these without uploading: the collector must wait for it
        with db.write() as session:
            storage_gc.keep_alive(session, blobs=stored, files=files)
            possession.refresh_uploads(session, principal.account_id, stored)
    return stored


def verified_size(db: Database, principal: Principal, *, repo_type: str, repo_id: str, oid: str) -> int | None:
    """The size of ``oid`` if it is stored and the caller, who may upload to the repo, has it."""
    with db.read() as session:
        pull_requests.find_uploadable(session, principal, repo_type, repo_id, proposing=True)
        return possession.stored_sizes(session, principal, [oid]).get(oid) if is_sha256(oid) else None


def xet_token_repo(
    db: Database,
    principal: Principal | None,
    *,
    repo_type: str,
    repo_id: str,
    revision: str,
    write: bool,
    create_pr: bool = False,
) -> int:
    """The repo (primary key) a Xet token of the caller may be issued for: to read, one they may download from; to
    ``write``, one they write to, or whose discussions they take part in for a pull request's files (``create_pr``,
    or ``refs/pr/N``). The revision must exist (but ``None``, which huggingface_hub names opening a pull request)."""
    with db.read() as session:
        if write and (create_pr or pr_num(revision) is not None):
            repo = pull_requests.find_uploadable(session, principal, repo_type, repo_id, proposing=True)
        else:
            repo = repos.find_repo(session, principal, repo_type=repo_type, repo_id=repo_id, write=write)
        if not write:
            access.check_download(session, principal, repo=repo, path="")
        if not (create_pr and revision == "None"):
            resolve_revision(session, repo, rev=revision)
        return repo.id
