"""``push`` from a bucket: publish a checkpoint that a run mirrored into a bucket to a model repo, by Xet hash.

The weights do not travel again. The hub is asked to give the repo the bucket's weight files by their Xet hash
(``POST /api/buckets/{id}/lfs-files/duplicate``, the bucket form of the duplicate call ``huggingface_hub`` makes for
cross-repo copies), and one commit then names them as LFS files by the sha256s of the checkpoint's sealed manifest
(the hub checks them against the bytes it holds). Beside them the commit adds the small files this module writes:
what :func:`openckpt.export` writes for the checkpoint without a dtype cast (its weight files are the training
checkpoint's byte for byte): ``openckpt.json``, ``README.md``, ``config.json``, the shard index, the package list.

``hf://buckets/<owner>/<name>/<run>`` stands for the run's ``LATEST`` checkpoint, as a run directory does for
:func:`openckpt.client.push.push`; ``hf://buckets/<owner>/<name>/<run>/step-00000100`` for that checkpoint.
"""

from __future__ import annotations

import base64
import json
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from huggingface_hub import get_session
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status  # type: ignore[attr-defined]

from openckpt.checkpoint.describe import software_versions
from openckpt.checkpoint.snapshot import MODEL_ENTRY, write_json_file
from openckpt.client.api import hf_api
from openckpt.client.bucket_mirror import BUCKET_SCHEME, BucketMirror, parse_bucket_url
from openckpt.client.push import _merged_card, _repo_card_meta
from openckpt.digest import digest_bytes
from openckpt.errors import CheckpointNotFoundError, IntegrityError, ManifestError, StateMismatchError
from openckpt.format.card import render_card
from openckpt.format.manifest import MANIFEST_NAME, EntryRecord, FileRecord, Manifest, read_manifest, write_manifest

if TYPE_CHECKING:
    from huggingface_hub import HfApi


__all__ = ["BucketPush", "push_from_bucket"]

PACKAGES = "openckpt-packages.txt"
CARD = "README.md"


@dataclass(frozen=True)
class BucketPush:
    repo_id: str
    revision: str
    commit: str
    commit_url: str
    files: list[str]
    """Paths committed, as in the repo."""
    source: str
    """The checkpoint published, as a bucket URL."""
    by_hash: int
    """Bytes of the weight files the repo got by hash, none of them sent."""


def _locate(url: str, *, endpoint: str | None, token: str | None) -> tuple[BucketMirror, str]:
    """The mirror of the run holding the checkpoint ``url`` names, and the checkpoint's name in it."""
    bucket_id, path = parse_bucket_url(url)
    head, _, last = path.rpartition("/")
    if last:
        parent = BucketMirror(f"{BUCKET_SCHEME}{bucket_id}/{head}", endpoint=endpoint, token=token)
        if parent.read(f"{last}/{MANIFEST_NAME}") is not None:
            return parent, last
    run = BucketMirror(url, endpoint=endpoint, token=token)
    latest = (run.read("LATEST") or b"").decode(errors="replace").strip()
    if latest and run.read(f"{latest}/{MANIFEST_NAME}") is not None:
        return run, latest
    raise CheckpointNotFoundError(f"{url} is neither a checkpoint nor a run with a LATEST checkpoint", path=Path(path))


def _export_files(
    mirror: BucketMirror, name: str, source: Manifest, folder: Path, *, title: str, kept: dict[str, Any]
) -> Manifest:
    """Write into ``folder`` the small files :func:`openckpt.export` writes for ``name`` (the card with ``kept``'s
    front matter, as :func:`openckpt.client.push.push` does); return its manifest."""
    entry = source.entries.get(MODEL_ENTRY)
    if source.distributed is not None or entry is None or entry.kind != "module":
        raise StateMismatchError(f"{name}: no 'model' module entry of one process to publish", path=folder)
    files = {f: source.files[f] for f in entry.files}
    if any(rec.sha256 is None for rec in files.values()):
        raise ManifestError(f"{name} in the bucket is not sealed (no sha256s): push it from its directory", path=folder)
    if len(entry.files) > 1:  # the shard index the checkpoint has is the one export writes
        index = f"{MODEL_ENTRY}.safetensors.index.json"
        mirror.get([f"{name}/{index}"], folder / ".bucket")
        data = (folder / ".bucket" / name / index).read_bytes()
        (folder / index).write_bytes(data)
        files[index] = FileRecord.of(digest_bytes(data))
    architecture = source.architecture
    if architecture is not None and architecture.config is not None:
        write_json_file(folder, "config.json", dict(architecture.config), files)
    recipe = source.recipe
    if recipe is not None and recipe.packages_file:
        packages = _packages(mirror, name, recipe.packages_file)
        if packages is not None:
            (folder / PACKAGES).write_bytes(packages)
            files[PACKAGES] = FileRecord.of(digest_bytes(packages))
            recipe = recipe.model_copy(update={"packages_file": PACKAGES})
    manifest = Manifest(
        id=uuid.uuid4().hex,
        created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        software=software_versions(),
        architecture=architecture,
        recipe=recipe,
        training=source.training,
        lineage=source.lineage.model_copy(update={"parent": source.id}),
        entries={MODEL_ENTRY: EntryRecord(kind="module", files=list(entry.files))},
        files=files,
        tensors={k: t for k, t in source.tensors.items() if k.split("/", 1)[0] == MODEL_ENTRY},
    )
    card = (
        _merged_card(render_card(manifest, name=title), kept).encode()
        if kept
        else render_card(manifest, name=title).encode()
    )
    (folder / CARD).write_bytes(card)
    manifest.files[CARD] = FileRecord.of(digest_bytes(card))
    write_manifest(folder, manifest)
    return manifest


def _packages(mirror: BucketMirror, name: str, packages_file: str) -> bytes | None:
    """The package list a checkpoint's recipe names relative to the checkpoint (``../environments/...``)."""
    parts = [name, *packages_file.split("/")]
    resolved: list[str] = []
    for part in parts:
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
        elif part not in ("", "."):
            resolved.append(part)
    return mirror.read("/".join(resolved)) if resolved else None


def _weights(mirror: BucketMirror, name: str, manifest: Manifest) -> dict[str, tuple[str, str, int]]:
    """Weight file → (Xet hash in the bucket, sha256, size), checked against the manifest's sizes."""
    files = manifest.entries[MODEL_ENTRY].files
    found = mirror.stat([f"{name}/{f}" for f in files])
    out = {}
    for f in files:
        rec, (xet_hash, size) = manifest.files[f], found.get(f"{name}/{f}", ("", -1))
        if size != rec.size or rec.sha256 is None:
            raise IntegrityError(f"{mirror.url}/{name}/{f} is missing or not the size its manifest says", path=Path(f))
        out[f] = (xet_hash, rec.sha256, rec.size)
    return out


def _duplicate(api: HfApi, bucket_id: str, target: tuple[str, str], files: list[dict[str, str]]) -> None:
    """Ask the hub to give the repo ``target`` (type, id) the bucket's files by Xet hash; no bytes move."""
    response = get_session().post(
        f"{api.endpoint}/api/buckets/{bucket_id}/lfs-files/duplicate",
        headers=build_hf_headers(token=api.token),
        json={"target": {"type": target[0], "name": target[1]}, "files": files},
    )
    hf_raise_for_status(response)
    failed = response.json().get("failed", [])
    if failed:
        raise IntegrityError("the hub refused: " + "; ".join(f"{f.get('sha256')}: {f.get('error')}" for f in failed))


def _commit(api: HfApi, repo: tuple[str, str], revision: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One commit in the Hub's NDJSON form (header, ``file`` and ``lfsFile`` lines), as ``create_commit`` sends."""
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    response = get_session().post(
        f"{api.endpoint}/api/{repo[0]}s/{repo[1]}/commit/{quote(revision, safe='')}",
        headers={**build_hf_headers(token=api.token), "Content-Type": "application/x-ndjson"},
        content=body,
    )
    hf_raise_for_status(response)
    result: dict[str, Any] = response.json()
    return result


def push_from_bucket(
    url: str,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    message: str | None = None,
    replace_card: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> BucketPush:
    """Publish the checkpoint ``url`` names (see the module docstring) to the model repo ``repo_id``, its weights by
    Xet hash.

    The card keeps the front matter of the card the repo has (license, tags...) unless ``replace_card``.
    """
    api = hf_api(endpoint, token)
    mirror, name = _locate(url, endpoint=api.endpoint, token=token)
    repo_id = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True).repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openckpt-bucket-push-") as tmp:
        folder = Path(tmp)
        mirror.get([f"{name}/{MANIFEST_NAME}"], folder / ".bucket")
        source = read_manifest(folder / ".bucket" / name)
        kept = {} if replace_card else _repo_card_meta(api, repo_id, repo_type="model", revision=revision)
        manifest = _export_files(mirror, name, source, folder, title=repo_id.split("/")[-1], kept=kept)
        weights = _weights(mirror, name, manifest)
        wanted = [
            {"xetHash": x, "sha256": s, "filename": mirror.remote(f"{name}/{f}")} for f, (x, s, _) in weights.items()
        ]
        _duplicate(api, mirror.bucket_id, ("model", repo_id), wanted)
        small = sorted(p.name for p in folder.iterdir() if p.is_file())
        title = message or f"Push {name} from {mirror.url} with openckpt (weights by Xet hash)"
        lines: list[dict[str, Any]] = [{"key": "header", "value": {"summary": title, "description": ""}}]
        for f in small:
            content = base64.b64encode((folder / f).read_bytes()).decode()
            lines.append({"key": "file", "value": {"content": content, "path": f, "encoding": "base64"}})
        for f, (_, sha256, size) in weights.items():
            lines.append({"key": "lfsFile", "value": {"path": f, "algo": "sha256", "oid": sha256, "size": size}})
        info = _commit(api, ("model", repo_id), revision or "main", lines)
    return BucketPush(
        repo_id=repo_id,
        revision=revision or "main",
        commit=str(info.get("commitOid", "")),
        commit_url=str(info.get("commitUrl", "")),
        files=sorted([*small, *weights]),
        source=f"{mirror.url}/{name}",
        by_hash=sum(size for _, _, size in weights.values()),
    )
