"""Small blobs the hub writes itself (a new repo's ``.gitattributes``, a web edit): store once, record once."""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from openckpt.digest import git_blob_sha1
from openckpt.hub.db.models import Blob
from openckpt.store.blobs import BlobStore

__all__ = ["GITATTRIBUTES", "put_bytes", "record_blob", "store_bytes"]

GITATTRIBUTES = b"""*.7z filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.gguf filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""


def put_bytes(store: BlobStore, data: bytes) -> str:
    """Store ``data`` as a blob unless the store has it; return its sha256. Not recorded in the database yet."""
    sha256 = hashlib.sha256(data).hexdigest()
    if not store.exists(sha256):
        writer = store.writer()
        writer.write(data)
        writer.commit(sha256, len(data))
    return sha256


def store_bytes(store: BlobStore, session: Session, data: bytes) -> tuple[str, str]:
    """Store ``data`` as a blob (once) and record it; return (sha256, git blob sha1)."""
    sha256 = put_bytes(store, data)
    record_blob(session, sha256, len(data))
    return sha256, git_blob_sha1(data)


def record_blob(session: Session, sha256: str, size: int) -> None:
    """Record a stored blob; a no-op if it is known, also when a concurrent transaction records it first."""
    if session.get(Blob, sha256) is not None:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(Blob).values(sha256=sha256, size=size).on_conflict_do_nothing())
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        session.execute(sqlite_insert(Blob).values(sha256=sha256, size=size).on_conflict_do_nothing())
    else:
        session.merge(Blob(sha256=sha256, size=size))
