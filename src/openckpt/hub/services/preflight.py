"""The LFS batch API's questions of the database: which objects a caller need not send, and whether an upload is
stored and theirs (``verify``).

Storage is shared by sha256, so an object counts as stored for a caller only if they have it (``possession``):
anything else is asked for again, exactly as if the hub lacked it.
"""

from __future__ import annotations

from openckpt.hub.db.engine import Database
from openckpt.hub.services import possession, pull_requests, repos, storage_gc
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.cas_files import xet_files
from openckpt.store.blobs import is_sha256

__all__ = ["stored_for_batch", "verified_size"]


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
            repos.find_repo(session, principal, repo_type, repo_id, write=write)
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
