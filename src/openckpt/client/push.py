"""``push``: publish a checkpoint directory to a hub repo in one commit.

A *training* checkpoint (its ``openckpt.json`` has entries besides ``model``: optimizer, rng, ...) is first
exported with :func:`openckpt.export` into a temporary directory: weights only, Hugging Face layout, a README.md
card whose YAML carries the manifest's lineage. Any other directory is uploaded as it is, plus a README.md
generated from its ``openckpt.json`` when it has a manifest but no card. The source directory is not modified,
except that a fresh save's manifest is sealed first (:mod:`openckpt.checkpoint.seal`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd

from openckpt.client.api import hf_api
from openckpt.errors import CheckpointNotFoundError
from openckpt.format.card import render_card
from openckpt.format.manifest import MANIFEST_NAME, read_manifest

__all__ = ["PushResult", "is_training_checkpoint", "push"]

MODEL_ENTRY = "model"
CARD_NAME = "README.md"


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str
    commit: str
    """The new commit's id."""
    commit_url: str
    files: list[str]
    """Paths uploaded, as in the repo."""
    exported: bool
    """True if a training checkpoint was exported before the upload."""


def is_training_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` is an openckpt checkpoint holding more than the ``model`` entry."""
    if not (directory / MANIFEST_NAME).is_file():
        return False
    return set(read_manifest(directory).entries) - {MODEL_ENTRY} != set()


def _ignored(rel: str) -> bool:
    """What ``upload_folder`` never uploads either: ``.git`` and huggingface_hub's ``.cache/huggingface``."""
    parts = rel.split("/")
    return ".git" in parts or any(parts[i : i + 2] == [".cache", "huggingface"] for i in range(len(parts) - 1))


def _operations(folder: Path, *, name: str) -> list[CommitOperationAdd]:
    """One upload per file under ``folder`` (without ``.git`` and huggingface_hub's cache), plus a card if due."""
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    files = {rel: p for rel, p in files.items() if not _ignored(rel)}
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in files.items()]
    if CARD_NAME not in files and MANIFEST_NAME in files:
        card = render_card(read_manifest(folder), name=name).encode()
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card))
    return operations


def _seal(source: Path) -> None:
    """Finish a fresh save's manifest (its sha256s) before its files are hashed for upload; see checkpoint.seal."""
    from openckpt.checkpoint.seal import seal

    with contextlib.suppress(PermissionError):  # a read-only copy is uploaded as it is
        seal(source)


def push(
    path: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    message: str | None = None,
    dtype: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> PushResult:
    """Upload the checkpoint or model directory ``path`` to ``repo_id`` (created if missing, ``private`` then).

    ``revision`` is a branch, created from the default branch if missing. ``dtype`` (e.g. ``"bfloat16"``)
    casts the weights of an exported training checkpoint.
    """
    source = Path(path)
    if not source.is_dir():
        raise CheckpointNotFoundError("not a directory", path=source)
    api = hf_api(endpoint, token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    repo_id = repo.repo_id
    name = repo_id.split("/")[-1]
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    exported = is_training_checkpoint(source)
    if not exported and (source / MANIFEST_NAME).is_file():
        _seal(source)
    with tempfile.TemporaryDirectory(prefix="openckpt-push-") as tmp:
        folder = source
        if exported:
            from openckpt.checkpoint.export import export

            folder = Path(tmp) / name
            export(source, folder, dtype=dtype, name=name)
        operations = _operations(folder, name=name)
        title = message or f"Push {source.resolve().name} with openckpt" + (" (exported)" if exported else "")
        info = api.create_commit(repo_id, operations, commit_message=title, revision=revision)
    return PushResult(
        repo_id=repo_id,
        revision=revision or "main",
        commit=info.oid,
        commit_url=info.commit_url,
        files=sorted(op.path_in_repo for op in operations),
        exported=exported,
    )
