"""Storage URLs: which blob store a hub uses (``OPENCKPT_STORAGE_URL``).

- empty: files under ``<data_dir>/store`` (the default);
- ``file:///srv/openckpt/store`` or a plain absolute path: files under that directory;
- ``s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000&region=eu-west-1``: an S3-compatible bucket; further
  options ``addressing_style`` (``path`` or ``virtual``) and ``part_size`` (bytes per multipart part). Credentials
  come from the AWS environment variables or boto3's other usual sources, never from the URL.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from openckpt.errors import StorageError
from openckpt.store.blobs import BlobStore

__all__ = ["open_store"]

S3_OPTIONS = ("endpoint_url", "region", "addressing_style", "part_size")


def open_store(url: str, data_dir: Path) -> BlobStore:
    """The blob store ``url`` names; empty means files under ``<data_dir>/store``. Raises :class:`StorageError`."""
    from openckpt.store.local import LocalBlobStore

    if not url:
        return LocalBlobStore(data_dir / "store")
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StorageError(f"storage URL {url!r}: a local store needs an absolute path, as in file:///srv/store")
        return LocalBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return _s3(url, parts.netloc, unquote(parts.path), parts.query)
    raise StorageError(f"storage URL {url!r}: use file:///path or s3://bucket/prefix?endpoint_url=...")


def _s3(url: str, bucket: str, prefix: str, query: str) -> BlobStore:
    from openckpt.store.s3 import S3BlobStore

    if not bucket:
        raise StorageError(f"storage URL {url!r} names no bucket: s3://bucket/prefix")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - set(S3_OPTIONS))
    if unknown:
        raise StorageError(f"storage URL {url!r}: unknown option {', '.join(unknown)} (known: {', '.join(S3_OPTIONS)})")
    if options.get("addressing_style", "path") not in ("path", "virtual", "auto"):
        raise StorageError(f"storage URL {url!r}: addressing_style must be path, virtual or auto")
    part_size = options.get("part_size", "")
    if part_size and not part_size.isdigit():
        raise StorageError(f"storage URL {url!r}: part_size must be a number of bytes")
    try:
        import boto3  # noqa: F401 - only to fail early with the remedy
    except ImportError:
        raise StorageError("an s3:// storage URL needs boto3: pip install 'openckpt[s3]'") from None
    return S3BlobStore(
        bucket,
        prefix,
        endpoint_url=options.get("endpoint_url") or None,
        region=options.get("region") or None,
        addressing_style=options.get("addressing_style") or None,
        part_size=int(part_size) if part_size else None,
    )
