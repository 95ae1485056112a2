"""Publishing bucket files to a repo without sending their bytes again (``POST /api/buckets/{id}/lfs-files/duplicate``).

The bucket form of the ``lfs-files/duplicate`` call ``huggingface_hub`` makes before a commit that copies LFS files
across repos: each file names its Xet hash, the sha256 the commit will name it by, and its path in the bucket. The
caller must be able to read the bucket and write the target repo; the file must be in the bucket at that path with
that Xet hash; and the claimed sha256 is verified by reconstructing the bytes (a claim, not trusted). The caller then
has the object (as if they had uploaded it), so the commit that follows names it by sha256 and the LFS batch asks
for nothing. The commit goes through the repo's whole flow: the scan gate and the owner's policies see the file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from openckpt.errors import BadRequestError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import XetSha256
from openckpt.hub.services import possession, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.buckets.files import paths_info
from openckpt.hub.services.buckets.registry import find_bucket
from openckpt.hub.services.file_proofs import verify_sha256
from openckpt.hub.services.stored_files import raw_blobs
from openckpt.store.blobs import BlobStore

__all__ = ["Duplicate", "duplicate_to_repo", "parse_files"]

_HEX = re.compile(r"[0-9a-f]{64}")
MAX_FILES = 1000


@dataclass(frozen=True)
class Duplicate:
    """One file to publish: its Xet hash, the sha256 a commit will name it by, and its path in the bucket."""

    xet_hash: str
    sha256: str
    filename: str


def parse_files(items: object) -> list[Duplicate]:
    """The ``files`` of a request; a :class:`BadRequestError` unless each is ``{xetHash, sha256, filename}``."""
    if not isinstance(items, list) or len(items) > MAX_FILES:
        raise BadRequestError(f"expected files: a list of at most {MAX_FILES} {{xetHash, sha256, filename}}")
    found = []
    for item in items:
        fields = [item.get(k) if isinstance(item, dict) else None for k in ("xetHash", "sha256", "filename")]
        xet_hash, sha256, filename = fields
        if not (isinstance(xet_hash, str) and isinstance(sha256, str) and isinstance(filename, str)):
            raise BadRequestError("expected files: a list of {xetHash, sha256, filename}")
        if not (_HEX.fullmatch(xet_hash) and _HEX.fullmatch(sha256)):
            raise BadRequestError(f"{filename}: xetHash and sha256 must be 64 lowercase hex digits")
        found.append(Duplicate(xet_hash, sha256, filename))
    return found


def duplicate_to_repo(
    db: Database,
    store: BlobStore,
    *,
    principal: Principal,
    bucket_id: str,
    target: tuple[str, str],
    files: Sequence[Duplicate],
) -> list[dict[str, str]]:
    """Give the caller the objects of ``files`` for a commit to the repo ``target`` (type, id); return the files that
    could not be, as ``{sha256, error}``."""
    with db.read() as session:
        bucket = find_bucket(session, bucket_id, principal=principal)
        repo_pk = repos.find_repo(session, principal, repo_type=target[0], repo_id=target[1], write=True).id
        held = {row.path: row for row in paths_info(session, bucket.id, paths=[f.filename for f in files])}
    failed: list[dict[str, str]] = []
    blobs = raw_blobs(store)
    for f in files:
        row = held.get(f.filename)
        if row is None or row.xet_hash != f.xet_hash:
            failed.append(
                {"sha256": f.sha256, "error": f"{f.filename} of {bucket_id} is not the Xet file {f.xet_hash}"}
            )
            continue
        with db.write() as session:
            if session.get(XetSha256, (f.sha256, f.xet_hash)) is None:
                session.add(XetSha256(sha256=f.sha256, file_hash=f.xet_hash, size=row.size, repo_id=repo_pk))
        if not verify_sha256(db, blobs, f.sha256, row.size, file_hash=f.xet_hash):
            failed.append({"sha256": f.sha256, "error": f"the bytes of {f.filename} do not have sha256 {f.sha256}"})
            continue
        possession.record_upload(db, principal.account_id, f.sha256)
    return failed
