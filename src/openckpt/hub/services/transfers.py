"""LFS transfers: which objects must be uploaded, self-authorising signed URLs, and storing uploads verified."""

from __future__ import annotations

import hashlib
import hmac
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

from openckpt.errors import BadRequestError, ForbiddenError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob
from openckpt.store.blobs import BlobStore, is_sha256

__all__ = ["MultipartUploads", "check_signature", "receive_blob", "record_blob", "sign"]


def _mac(secret: bytes, method: str, path: str, expires: int) -> str:
    return hmac.new(secret, f"{method} {path} {expires}".encode(), hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, path: str, ttl: int) -> str:
    """``path?exp=…&sig=…``: a URL that authorises ``method`` on ``path`` until it expires."""
    expires = int(time.time()) + ttl
    return f"{path}?exp={expires}&sig={_mac(secret, method, path, expires)}"


def check_signature(secret: bytes, method: str, path: str, exp: str | None, sig: str | None) -> None:
    if not exp or not sig or not exp.isdigit():
        raise ForbiddenError("this transfer URL is not signed")
    if int(exp) < time.time():
        raise ForbiddenError("this transfer URL has expired: request a new one")
    if not hmac.compare_digest(_mac(secret, method, path, int(exp)), sig):
        raise ForbiddenError("invalid signature on transfer URL")


def record_blob(db: Database, sha256: str, size: int) -> None:
    with db.write() as session:
        if session.get(Blob, sha256) is None:
            session.add(Blob(sha256=sha256, size=size))


async def receive_blob(store: BlobStore, db: Database, body: AsyncIterator[bytes], sha256: str, size: int) -> None:
    """Stream an upload into the store, hashing as it arrives; visible only if sha256 and size match."""
    if not is_sha256(sha256):
        raise BadRequestError(f"{sha256!r} is not a sha256")
    writer = store.writer()
    try:
        async for chunk in body:
            writer.write(chunk)
            if writer.size > size:
                raise BadRequestError(f"upload exceeds the announced {size} bytes")
    except BaseException:
        writer.abort()
        raise
    writer.commit(sha256, size)
    record_blob(db, sha256, size)


class MultipartUploads:
    """Parts of multipart uploads, kept under ``<data>/multipart/<oid>/`` until completion."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def part_path(self, sha256: str, number: int) -> Path:
        if not is_sha256(sha256) or number < 1:
            raise BadRequestError("invalid multipart upload")
        directory = self.root / sha256
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{number:06d}"

    async def receive_part(self, sha256: str, number: int, body: AsyncIterator[bytes], limit: int) -> str:
        """Store one part; return its ETag (md5, as S3 does)."""
        path = self.part_path(sha256, number)
        tmp = path.with_suffix(".tmp")
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with open(tmp, "wb") as f:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    raise BadRequestError(f"part {number} exceeds the chunk size {limit}")
                md5.update(chunk)
                f.write(chunk)
        tmp.replace(path)
        return md5.hexdigest()

    def complete(self, store: BlobStore, db: Database, sha256: str, size: int, parts: list[int]) -> None:
        """Join the parts in order into one verified blob."""
        directory = self.root / sha256
        if parts != list(range(1, len(parts) + 1)):
            raise BadRequestError("parts must be numbered 1..N without gaps")
        writer = store.writer()
        try:
            for number in parts:
                path = self.part_path(sha256, number)
                if not path.exists():
                    raise BadRequestError(f"part {number} was not uploaded")
                with open(path, "rb") as f:
                    while chunk := f.read(8 << 20):
                        writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        writer.commit(sha256, size)
        record_blob(db, sha256, size)
        shutil.rmtree(directory, ignore_errors=True)
