"""The S3 blob store: blobs as objects ``<prefix>blobs/<sha256>`` in a bucket of any S3-compatible service.

An object appears under its final key only complete and verified. A writer that knows the blob's name streams it as a
multipart upload to the final key and completes the upload only once size and sha256 match (aborting otherwise); a
writer that does not, uploads to ``<prefix>tmp/<uuid>`` and copies server-side once the name is known. Blobs that
fit one part go in one PUT, with their sha256 for the service to check. Credentials come from boto3's usual chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance roles).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from openckpt.errors import IntegrityError, StorageError, UploadAbortedError, UploadMismatchError, UploadTooLargeError
from openckpt.store.blobs import BlobStat, BlobWriter, check_sha256, is_sha256

__all__ = ["S3BlobStore"]

MiB = 1 << 20
PART_SIZE = 8 * MiB
"""Default multipart part size (grown for large announced sizes); S3 wants at least 5 MiB for all but the last."""
MAX_PARTS = 10_000
SINGLE_PUT_MAX = 64 * MiB
"""A blob of unknown name but announced size up to this is buffered and sent in one PUT (no server-side copy)."""
IN_FLIGHT = 3
"""Parts one upload may have on the wire at once: uploads overlap hashing, memory stays at (1 + this) parts."""
READ_CHUNK = 1 * MiB
READ_RETRIES = 3
"""Times a broken download stream is resumed (from where it broke) before the read fails."""
_PARTS = ThreadPoolExecutor(32, thread_name_prefix="openckpt-s3-part")
_MISSING = ("404", "NoSuchKey", "NotFound")


def _code(error: BaseException) -> str:
    response: dict[str, Any] = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class _Writer:
    """Hashes while it cuts the stream into parts; parts go out in the background, at most ``IN_FLIGHT`` at once."""

    def __init__(self, store: S3BlobStore, size_hint: int | None, sha256: str | None) -> None:
        self.store = store
        self.announced = check_sha256(sha256) if sha256 is not None else None
        self.size_hint = size_hint
        self.part_size = store.part_size_for(size_hint)
        self.hash = hashlib.sha256()
        self.size = 0
        self.buffer = bytearray()
        self.key = ""
        """The key of the multipart upload: the final one when the name was announced, else a temp key."""
        self.upload_id: str | None = None
        self.parts: list[Future[dict[str, Any]]] = []
        self.slots = threading.Semaphore(IN_FLIGHT)
        self.completed_temp = False
        self.in_file = 0
        self._closed = False
        self._lock = threading.Lock()  # abort() may come from another thread than a write in progress

    def write(self, data: bytes) -> None:
        self.write_all((data,))

    def local_file(self) -> None:
        return None  # the parts go to the bucket

    def write_all(self, chunks: Sequence[bytes]) -> None:
        with self._lock:
            if self._closed:
                raise UploadAbortedError("this upload was aborted")
            for chunk in chunks:
                self.hash.update(chunk)
                self.buffer += chunk
                self.size += len(chunk)
            while len(self.buffer) >= self.part_size and not self._buffer_whole():
                part = bytes(memoryview(self.buffer)[: self.part_size])
                del self.buffer[: self.part_size]
                self._send(part)

    def written(self) -> None:
        """Chunks are copied into the writer's own buffer as they come: nothing to wait for."""

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        try:
            with self._lock:
                if self._closed:
                    raise UploadAbortedError("this upload was aborted")
                digest = self.hash.hexdigest()
                if expected_size is not None and self.size != expected_size:
                    raise UploadMismatchError(f"received {self.size} bytes, expected {expected_size}")
                for wanted in (expected_sha256, self.announced):
                    if wanted is not None and digest != wanted:
                        raise UploadMismatchError(f"content has sha256 {digest}, expected {wanted}")
                self._publish(digest)
                self._closed = True
            return digest
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        with self._lock:
            self._closed = True
            self.buffer = bytearray()
            for part in self.parts:  # S3 may keep a part that lands after the abort: let them land first
                with contextlib.suppress(BaseException):
                    part.result()
            s3, bucket = self.store.client, self.store.bucket
            with contextlib.suppress(Exception):
                if self.upload_id is not None:
                    s3.abort_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self.upload_id)
                    self.upload_id = None
                if self.completed_temp:
                    s3.delete_object(Bucket=bucket, Key=self.key)
                    self.completed_temp = False

    def _buffer_whole(self) -> bool:
        """Keep a blob of unknown name in memory while it may still go out in one PUT."""
        return (
            self.announced is None
            and self.upload_id is None
            and self.size_hint is not None
            and self.size_hint <= SINGLE_PUT_MAX
            and self.size <= SINGLE_PUT_MAX
        )

    def _send(self, part: bytes) -> None:
        store = self.store
        if self.upload_id is None:
            self.key = store.key_of(self.announced) if self.announced else store.temp_key()
            created = store.call("start an upload", store.client.create_multipart_upload, Key=self.key)
            self.upload_id = str(created["UploadId"])
        for done in self.parts:  # fail fast: no point streaming gigabytes into a broken upload
            if done.done() and done.exception() is not None:
                done.result()
        number = len(self.parts) + 1
        if number >= MAX_PARTS:
            raise UploadTooLargeError(f"upload exceeds {MAX_PARTS} parts of {self.part_size} bytes")
        if number % 1000 == 0:  # size unknown: grow the parts so that 10,000 reach far enough
            self.part_size *= 2
        self.slots.acquire()
        try:
            future = _PARTS.submit(self._upload_part, number, part)
        except BaseException:
            self.slots.release()
            raise
        future.add_done_callback(lambda _: self.slots.release())
        self.parts.append(future)

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        store = self.store
        sent = store.call(
            f"upload part {number}",
            store.client.upload_part,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
        )
        return {"PartNumber": number, "ETag": sent["ETag"]}

    def _publish(self, digest: str) -> None:
        store, final = self.store, self.store.key_of(digest)
        if self.upload_id is None:
            checksum = base64.b64encode(bytes.fromhex(digest)).decode()
            body = bytes(self.buffer)
            store.call("store a blob", store.client.put_object, Key=final, Body=body, ChecksumSHA256=checksum)
            return
        if self.buffer or not self.parts:
            self._send(bytes(self.buffer))
            self.buffer = bytearray()
        parts = [part.result() for part in self.parts]
        store.call(
            "complete an upload",
            store.client.complete_multipart_upload,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self.upload_id = None
        if self.key != final:
            self.completed_temp = True
            if not store.exists(digest):
                store.copy(self.key, final)
            store.call("remove a temporary object", store.client.delete_object, Key=self.key)
            self.completed_temp = False


class S3BlobStore:
    """Blobs in ``bucket`` under ``prefix``; fails at construction if the bucket cannot be reached."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str | None = None,
        part_size: int | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        part_size = part_size or PART_SIZE
        if part_size < 5 * MiB:
            raise StorageError(f"S3 parts must be at least 5 MiB, not {part_size} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        self.where = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=64,
            s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
            # our own sha256 guards every blob; the newer default checksums break some S3-compatible services
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        if self.call("open the bucket", self.client.head_bucket, missing_ok=True) is None:
            raise StorageError(f"the bucket {bucket!r} does not exist ({self.where}): create it first")

    # ---- plumbing ---------------------------------------------------------------------------------------------

    def key_of(self, sha256: str) -> str:
        return f"{self.prefix}blobs/{check_sha256(sha256)}"

    def temp_key(self) -> str:
        return f"{self.prefix}tmp/{uuid.uuid4().hex}"

    def part_size_for(self, size_hint: int | None) -> int:
        """The part size that keeps an upload of ``size_hint`` bytes under S3's 10,000 parts."""
        if size_hint is None:
            return self.part_size
        return max(self.part_size, -(-size_hint // (MAX_PARTS - 1) // MiB) * MiB)

    def call(self, what: str, method: Callable[..., Any], /, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """``method(Bucket=…, **kwargs)``; None for a missing key if ``missing_ok``. Failures: :meth:`errors`."""
        from botocore.exceptions import ClientError

        with self.errors(what):
            try:
                return method(Bucket=self.bucket, **kwargs)
            except ClientError as e:
                if missing_ok and _code(e) in _MISSING:
                    return None
                raise

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn the failures of boto3 into :class:`StorageError` that say what failed and where."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except ClientError as e:
            code = _code(e)
            if code == "NoSuchBucket":
                raise StorageError(f"cannot {what}: the bucket {self.bucket!r} does not exist ({self.where})") from e
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(
                    f"cannot {what}: access denied to {self.where} ({code}): check the AWS credentials"
                ) from e
            raise StorageError(f"cannot {what} in {self.where}: {e}") from e
        except NoCredentialsError as e:
            raise StorageError(
                f"cannot {what}: no AWS credentials for {self.where} (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from e
        except BotoCoreError as e:
            raise StorageError(f"cannot {what}: {self.where} is unreachable: {e}") from e

    def copy(self, source: str, target: str) -> None:
        """Server-side copy (multipart for large objects) within the bucket."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=1 << 30, multipart_chunksize=1 << 30, max_concurrency=4)
        copy = self.client.copy
        self.call("copy a blob", copy, CopySource={"Bucket": self.bucket, "Key": source}, Key=target, Config=config)

    # ---- BlobStore ----------------------------------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self.stat(sha256) is not None

    def size(self, sha256: str) -> int | None:
        found = self.stat(sha256)
        return found.size if found is not None else None

    def stat(self, sha256: str) -> BlobStat | None:
        head = self.call("look up a blob", self.client.head_object, Key=self.key_of(sha256), missing_ok=True)
        if head is None:
            return None
        return BlobStat(int(head["ContentLength"]), head["LastModified"].timestamp())

    def writer(self, size_hint: int | None = None, *, sha256: str | None = None, hashed: bool = False) -> BlobWriter:
        return _Writer(self, size_hint, sha256)  # hashed or not, it hashes what it sends (cheap beside the network)

    def local_path(self, sha256: str) -> None:
        return None

    def read(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        key, pos, retries = self.key_of(sha256), start, 0
        while end is None or pos < end:
            ranged = {} if pos == 0 and end is None else {"Range": f"bytes={pos}-{'' if end is None else end - 1}"}
            try:
                response = self.call("read a blob", self.client.get_object, Key=key, missing_ok=True, **ranged)
            except StorageError as e:
                if _code(e.__cause__ or e) in ("InvalidRange", "416") and end is None:
                    return  # from at or past the end: nothing to read
                raise
            if response is None:
                raise IntegrityError(f"blob {sha256} is missing from the store ({self.where})")
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(READ_CHUNK):
                    pos += len(chunk)
                    yield chunk
            except (BotoCoreError, HTTPError, OSError) as e:  # the stream broke: resume where it stopped
                retries += 1
                if retries > READ_RETRIES:
                    raise StorageError(f"cannot read blob {sha256} from {self.where}: {e}") from e
                continue
            finally:
                body.close()
            if end is not None and pos < end:
                raise IntegrityError(f"blob {sha256} is shorter than recorded ({self.where})")
            return

    def delete(self, sha256: str) -> None:
        self.call("delete a blob", self.client.delete_object, Key=self.key_of(sha256))

    def keys(self) -> Iterator[str]:
        prefix = f"{self.prefix}blobs/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in self._pages("list blobs", pages):
            for item in page.get("Contents", ()):
                name = item["Key"][len(prefix) :]
                if is_sha256(name):
                    yield name

    def sweep(self, older_than: float) -> int:
        """Abort multipart uploads and remove temp objects last touched ``older_than`` seconds ago or more."""
        cutoff, removed = time.time() - older_than, 0
        uploads = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in self._pages("list uploads", uploads):
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() <= cutoff:
                    abort = self.client.abort_multipart_upload
                    self.call("abort an upload", abort, Key=upload["Key"], UploadId=upload["UploadId"], missing_ok=True)
                    removed += 1
        temp = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}tmp/")
        for page in self._pages("list temporary objects", temp):
            for item in page.get("Contents", ()):
                if item["LastModified"].timestamp() <= cutoff:
                    self.call("remove a temporary object", self.client.delete_object, Key=item["Key"])
                    removed += 1
        return removed

    def _pages(self, what: str, pages: Any) -> Iterator[dict[str, Any]]:
        iterator = iter(pages)
        while True:
            with self.errors(what):
                page: dict[str, Any] | None = next(iterator, None)
            if page is None:
                return
            yield page
