"""``BucketMirror``: a :class:`~openckpt.checkpoint.mirror.Mirror` in a hub bucket, through the stock client.

``hf://buckets/<owner>/<name>[/<prefix>]`` names it: ``CheckpointManager("runs/x",
mirror="hf://buckets/me/run-x")`` opens one through :func:`openckpt.checkpoint.mirror.open_mirror` (``me`` is the
token's account). The bucket is created (private) on the first upload if it does not exist. Files travel through Xet
(``HfApi.batch_bucket_files``, ``download_bucket_files``), so a checkpoint whose tensors mostly did not change
since the last one sends only the chunks that did. The hub is the one :mod:`openckpt.client.config` resolves
(``HF_ENDPOINT``, ``openckpt login``...), or ``endpoint``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from huggingface_hub import BucketFile, get_session
from huggingface_hub.errors import BucketNotFoundError, EntryNotFoundError
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status  # type: ignore[attr-defined]

from openckpt.client.api import hf_api
from openckpt.errors import CheckpointNotFoundError

__all__ = ["BUCKET_SCHEME", "BucketMirror", "parse_bucket_url"]

BUCKET_SCHEME = "hf://buckets/"


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``hf://buckets/owner/name/some/prefix`` → ``("owner/name", "some/prefix")``."""
    if not url.startswith(BUCKET_SCHEME):
        raise ValueError(f"not a bucket URL (hf://buckets/<owner>/<name>[/<prefix>]): {url!r}")
    parts = [p for p in url.removeprefix(BUCKET_SCHEME).split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise ValueError(f"not a bucket URL (hf://buckets/<owner>/<name>[/<prefix>]): {url!r}")
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:])


class BucketMirror:
    """The files of a manager's directory under ``prefix`` in the bucket ``bucket_id`` of a hub."""

    def __init__(
        self, url: str, *, endpoint: str | None = None, token: str | None = None, private: bool = True
    ) -> None:
        self._api = hf_api(endpoint, token)
        self.bucket_id, prefix = parse_bucket_url(url)
        owner, name = self.bucket_id.split("/")
        if owner == "me":  # the Hub's name for the caller, as in create_bucket("run-x")
            self.bucket_id = f"{self._api.whoami()['name']}/{name}"
        self.url = f"{BUCKET_SCHEME}{self.bucket_id}" + (f"/{prefix}" if prefix else "")
        self._prefix = f"{prefix}/" if prefix else ""
        self._private = private
        self._created = False

    def remote(self, name: str) -> str:
        """The path in the bucket of the mirror's file ``name``."""
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a relative file name: {name!r}")
        return self._prefix + name

    def put(self, files: Mapping[str, Path | bytes]) -> None:
        """Upload the files (paths or bytes) in one batch."""
        if not self._created:
            self._api.create_bucket(self.bucket_id, private=self._private, exist_ok=True)
            self._created = True
        adds: list[tuple[str | Path | bytes, str]] = [
            (source if isinstance(source, bytes) else str(source), self.remote(name)) for name, source in files.items()
        ]
        self._api.batch_bucket_files(self.bucket_id, add=adds)

    def get(self, names: Sequence[str], directory: Path) -> None:
        """Download the files into ``directory``, verified by Xet's hashes on the way."""
        pairs: list[tuple[str | BucketFile, str | Path]] = [
            (self.remote(n), directory.joinpath(*PurePosixPath(n).parts)) for n in names
        ]
        try:
            self._api.download_bucket_files(self.bucket_id, pairs, raise_on_missing_files=True)
        except (EntryNotFoundError, BucketNotFoundError) as e:
            raise CheckpointNotFoundError(f"{self.url}: {e}", path=directory) from e

    def read(self, name: str) -> bytes | None:
        """A small file's bytes in one ``GET /buckets/{id}/resolve/{path}``: one answer, so a ``LATEST`` that moves
        meanwhile is read whole, old or new (paths-info then a download by hash could name a file gone since)."""
        response = get_session().get(
            f"{self._api.endpoint}/buckets/{self.bucket_id}/resolve/{quote(self.remote(name), safe='')}",
            headers=build_hf_headers(token=self._api.token),
            follow_redirects=True,
        )
        if response.status_code == 404:
            return None  # no such file, or no such bucket (yet)
        hf_raise_for_status(response)
        return bytes(response.content)

    def list(self, prefix: str) -> dict[str, int]:
        base = self.remote(prefix) + "/" if prefix else self._prefix
        try:
            items = list(self._api.list_bucket_tree(self.bucket_id, prefix=base or None, recursive=True))
        except BucketNotFoundError:
            return {}
        return {
            item.path.removeprefix(self._prefix): item.size
            for item in items
            if isinstance(item, BucketFile) and item.path.startswith(base)
        }

    def stat(self, names: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Name → (Xet hash, size) of those of the files the bucket holds."""
        paths = {self.remote(n): n for n in names}
        try:
            found = list(self._api.get_bucket_paths_info(self.bucket_id, list(paths)))
        except BucketNotFoundError:
            return {}
        return {paths[info.path]: (info.xet_hash, info.size) for info in found if info.path in paths}

    def delete(self, names: Sequence[str]) -> None:
        if names:
            self._api.batch_bucket_files(self.bucket_id, delete=[self.remote(n) for n in names])
