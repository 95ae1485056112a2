"""``pull``: download one revision of a repo with huggingface_hub, then verify every byte of it.

The revision is resolved to a commit first, so the file list checked and the files downloaded are the same
snapshot even while someone pushes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.hf_api import RepoFile

from openckpt.client.api import hf_api
from openckpt.client.repos import RepoType
from openckpt.client.verify import RemoteFile, verify_snapshot
from openckpt.errors import RevisionNotFoundError

__all__ = ["PullResult", "pull", "remote_files"]


@dataclass(frozen=True)
class PullResult:
    repo_id: str
    revision: str
    commit: str
    directory: Path
    files: list[RemoteFile]
    """The revision's files as the hub describes them (what :func:`verify_snapshot` checks against)."""
    verified: bool

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


def remote_files(
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: RepoType = "model",
    endpoint: str | None = None,
    token: str | None = None,
) -> list[RemoteFile]:
    """Every file of ``repo_id`` at ``revision`` as the hub's tree describes it."""
    api = hf_api(endpoint, token)
    tree = api.list_repo_tree(repo_id, revision=revision, repo_type=repo_type, recursive=True)
    return [RemoteFile.of(entry) for entry in tree if isinstance(entry, RepoFile)]


def pull(
    repo_id: str,
    directory: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    repo_type: RepoType = "model",
    endpoint: str | None = None,
    token: str | None = None,
    verify: bool = True,
    progress: Callable[[str, int], None] | None = None,
) -> PullResult:
    """Download ``repo_id`` at ``revision`` into ``directory`` (huggingface_hub's cache if None) and verify it.

    Raises :class:`~openckpt.errors.IntegrityError` naming each file that differs from the hub's tree or from
    ``openckpt.json``. ``progress(file, nbytes)`` follows the verification. With ``verify=False`` the caller
    runs :func:`~openckpt.client.verify.verify_snapshot` on ``result.directory`` and ``result.files`` itself.
    """
    api = hf_api(endpoint, token)
    commit = api.repo_info(repo_id, revision=revision, repo_type=repo_type).sha
    if commit is None:
        raise RevisionNotFoundError(f"the hub did not say which commit {repo_id}@{revision or 'main'} is")
    remote = remote_files(
        repo_id,
        revision=commit,
        repo_type=repo_type,
        endpoint=api.endpoint,
        token=api.token if isinstance(api.token, str) else None,
    )
    local = snapshot_download(
        repo_id,
        repo_type=repo_type,
        revision=commit,
        local_dir=None if directory is None else Path(directory),
        endpoint=api.endpoint,
        token=api.token,
    )
    if verify:
        verify_snapshot(Path(local), remote, progress=progress)
    return PullResult(repo_id, revision or "main", commit, Path(local), remote, verified=verify)
