"""``push``: publish a checkpoint directory to a hub repo in one commit.

A :class:`~openckpt.CheckpointManager` run directory (``LATEST`` and ``step-*``) stands for its ``LATEST``
checkpoint. A *training* checkpoint (its ``openckpt.json`` has entries besides ``model``: optimizer, rng, ...) is
first exported with :func:`openckpt.export` into a temporary directory: weights only, Hugging Face layout, a
README.md card whose YAML carries the manifest's lineage. Any other directory is uploaded as it is, plus a README.md
generated from its ``openckpt.json`` when it has a manifest but no card. A generated card keeps the front matter of
the card the repo has already (its license, tags, ...: keys it lacks come from the manifest) unless
``replace_card``. The source directory is not modified, except that a fresh save's manifest is sealed first
(:mod:`openckpt.checkpoint.seal`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from huggingface_hub import CommitOperationAdd

from openckpt.client.api import hf_api
from openckpt.digest import digest_bytes
from openckpt.errors import CheckpointNotFoundError
from openckpt.format.card import render_card
from openckpt.format.manifest import MANIFEST_NAME, FileRecord, read_manifest, write_manifest

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from openckpt.client.repos import RepoType

__all__ = ["PushResult", "is_training_checkpoint", "push", "resolve_run"]

MODEL_ENTRY = "model"
CARD_NAME = "README.md"
LATEST = "LATEST"


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
    source: Path
    """The checkpoint or directory pushed (a run directory's ``LATEST`` checkpoint)."""
    card_kept: bool = False
    """True if the generated card kept the front matter of the repo's card."""


def is_training_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` is an openckpt checkpoint holding more than the ``model`` entry."""
    if not (directory / MANIFEST_NAME).is_file():
        return False
    return set(read_manifest(directory).entries) - {MODEL_ENTRY} != set()


def resolve_run(directory: Path) -> Path:
    """A run directory of :class:`~openckpt.CheckpointManager` → its ``LATEST`` checkpoint; anything else as it is.

    A directory of ``step-*`` checkpoints without ``LATEST`` (nor a manifest of its own) is refused: which one to
    publish is the caller's choice.
    """
    if (directory / MANIFEST_NAME).is_file():
        return directory
    latest = directory / LATEST
    if latest.is_file():
        chosen = directory / latest.read_text().strip()
        if not (chosen / MANIFEST_NAME).is_file():
            raise CheckpointNotFoundError(f"LATEST names {chosen.name}, which is not a checkpoint", path=directory)
        return chosen
    steps = sorted(p.name for p in directory.glob("step-*") if (p / MANIFEST_NAME).is_file())
    if steps:
        raise CheckpointNotFoundError(
            f"a run directory without LATEST: push one of its checkpoints, e.g. {directory / steps[-1]}",
            path=directory,
        )
    return directory


def _split_card(text: str) -> tuple[dict[str, Any], str]:
    """A card's YAML front matter (empty if none or unreadable) and its body."""
    if text.startswith("---\n"):
        head, sep, body = text[4:].partition("\n---\n")
        if sep:
            try:
                meta = yaml.safe_load(head)
            except yaml.YAMLError:
                meta = None
            if isinstance(meta, dict):
                return meta, body
    return {}, text


def _repo_card_meta(api: HfApi, repo_id: str, *, repo_type: str, revision: str | None) -> dict[str, Any]:
    """The front matter of the repo's README.md at ``revision``; empty if it has none (or no card)."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        path = api.hf_hub_download(repo_id, CARD_NAME, repo_type=repo_type, revision=revision)
    except (EntryNotFoundError, RevisionNotFoundError):
        return {}
    return _split_card(Path(path).read_text(encoding="utf-8", errors="replace"))[0]


def _merged_card(generated: str, kept: dict[str, Any]) -> str:
    """``generated`` with ``kept``'s front matter; keys ``kept`` lacks come from ``generated``'s."""
    meta, body = _split_card(generated)
    merged = {**meta, **kept}
    return f"---\n{yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)}---\n{body}"


def _ignored(rel: str) -> bool:
    """What ``upload_folder`` never uploads either: ``.git`` and huggingface_hub's ``.cache/huggingface``."""
    parts = rel.split("/")
    return ".git" in parts or any(parts[i : i + 2] == [".cache", "huggingface"] for i in range(len(parts) - 1))


def _operations(folder: Path, *, name: str, kept: dict[str, Any]) -> list[CommitOperationAdd]:
    """One upload per file under ``folder`` (without ``.git`` and huggingface_hub's cache), plus a card if due
    (with ``kept`` front matter)."""
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    files = {rel: p for rel, p in files.items() if not _ignored(rel)}
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in files.items()]
    if CARD_NAME not in files and MANIFEST_NAME in files:
        card = _merged_card(render_card(read_manifest(folder), name=name), kept).encode()
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card))
    return operations


def _keep_front_matter(folder: Path, kept: dict[str, Any]) -> None:
    """Give the exported card in ``folder`` the ``kept`` front matter, and its manifest the card's new digest."""
    card = _merged_card((folder / CARD_NAME).read_text(encoding="utf-8"), kept).encode()
    (folder / CARD_NAME).write_bytes(card)
    manifest = read_manifest(folder)
    manifest.files[CARD_NAME] = FileRecord.of(digest_bytes(card))
    write_manifest(folder, manifest)


def _seal(source: Path) -> None:
    """Finish a fresh save's manifest (its sha256s) before its files are hashed for upload; see checkpoint.seal."""
    from openckpt.checkpoint.seal import seal

    with contextlib.suppress(PermissionError):  # a read-only copy is uploaded as it is
        seal(source)


def push(  # noqa: PLR0913 — public API: each keyword is a documented option (and a CLI flag)
    path: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: RepoType = "model",
    private: bool = False,
    message: str | None = None,
    dtype: str | None = None,
    replace_card: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> PushResult:
    """Upload the checkpoint, run or model directory ``path`` to ``repo_id`` (created if missing, ``private``
    then); see the module docstring for what is uploaded.

    ``revision`` is a branch, created from the default branch if missing. ``dtype`` (e.g. ``"bfloat16"``)
    casts the weights of an exported training checkpoint.
    """
    given = Path(path)
    if not given.is_dir():
        raise CheckpointNotFoundError("not a directory", path=given)
    source = resolve_run(given)
    api = hf_api(endpoint, token)
    repo = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    repo_id = repo.repo_id
    name = repo_id.split("/")[-1]
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    exported = is_training_checkpoint(source)
    if not exported and (source / MANIFEST_NAME).is_file():
        _seal(source)
    generates_card = exported or ((source / MANIFEST_NAME).is_file() and not (source / CARD_NAME).is_file())
    kept = {}
    if generates_card and not replace_card:
        kept = _repo_card_meta(api, repo_id, repo_type=repo_type, revision=revision)
    with tempfile.TemporaryDirectory(prefix="openckpt-push-") as tmp:
        folder = source
        if exported:
            from openckpt.checkpoint.export import export

            folder = Path(tmp) / name
            export(source, folder, dtype=dtype, name=name)
            if kept:
                _keep_front_matter(folder, kept)
        operations = _operations(folder, name=name, kept=kept)
        title = message or f"Push {source.resolve().name} with openckpt" + (" (exported)" if exported else "")
        info = api.create_commit(repo_id, operations, commit_message=title, revision=revision, repo_type=repo_type)
    return PushResult(
        repo_id=repo_id,
        revision=revision or "main",
        commit=info.oid,
        commit_url=info.commit_url,
        files=sorted(op.path_in_repo for op in operations),
        exported=exported,
        source=source,
        card_kept=bool(kept),
    )
