"""verify_snapshot without a hub: local files against a tree listing (LFS sha256 / git blob sha1) and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import openckpt
from openckpt.client.verify import RemoteFile, check_snapshot, verify_snapshot
from openckpt.digest import git_blob_sha1, lfs_pointer, sha256_file
from openckpt.errors import IntegrityError


def tree_of(directory: Path, lfs: tuple[str, ...] = (".safetensors",)) -> list[RemoteFile]:
    """What a hub's tree would say about ``directory``: LFS for the suffixes given, regular files otherwise."""
    files = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel, size = path.relative_to(directory).as_posix(), path.stat().st_size
        if path.name.endswith(lfs):
            sha = sha256_file(path)
            files.append(RemoteFile(rel, size, git_blob_sha1(lfs_pointer(sha, size)), sha))
        else:
            files.append(RemoteFile(rel, size, git_blob_sha1(path.read_bytes())))
    return files


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "ckpt"
    openckpt.save(path, {"model": torch.nn.Linear(4, 2)})
    openckpt.seal(path)  # before tests tamper with it
    return path


def test_a_faithful_copy_passes(ckpt: Path) -> None:
    seen: list[str] = []
    verify_snapshot(ckpt, tree_of(ckpt), progress=lambda name, n: seen.append(name))
    assert sorted(seen) == sorted(f.path for f in tree_of(ckpt))


def test_each_kind_of_difference_names_the_file(ckpt: Path) -> None:
    remote = tree_of(ckpt)
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (ckpt / "extra.txt").write_text("local only: ignored")
    problems = {p.file: p.message for p in check_snapshot(ckpt, remote)}
    assert list(problems) == ["model.safetensors"]
    assert "sha256" in problems["model.safetensors"] and "LFS" in problems["model.safetensors"]
    with pytest.raises(IntegrityError, match=r"model\.safetensors: sha256"):
        verify_snapshot(ckpt, remote)


def test_regular_files_are_checked_by_git_blob_id_and_missing_files_reported(ckpt: Path) -> None:
    (ckpt / "notes.md").write_text("hello")
    remote = tree_of(ckpt)
    (ckpt / "notes.md").write_text("hellO")
    (ckpt / "model.safetensors").unlink()
    problems = {p.file: p.message for p in check_snapshot(ckpt, remote)}
    assert problems["notes.md"].startswith("git blob sha1")
    assert problems["model.safetensors"] == "missing"


def test_a_manifest_that_disagrees_with_the_files_is_reported(ckpt: Path) -> None:
    """The hub's ids can match while the manifest does not (a wrong openckpt.json was pushed)."""
    manifest = json.loads((ckpt / "openckpt.json").read_text())
    manifest["files"]["model.safetensors"]["blake3"] = "0" * 64
    (ckpt / "openckpt.json").write_text(json.dumps(manifest))
    problems = check_snapshot(ckpt, tree_of(ckpt))
    assert [(p.file, p.message.split(" ")[0]) for p in problems] == [("model.safetensors", "blake3")]
    assert "openckpt.json" in problems[0].message


def test_files_listed_in_the_manifest_must_be_in_the_repo(ckpt: Path) -> None:
    remote = [f for f in tree_of(ckpt) if f.path != "model.safetensors"]
    (problem,) = check_snapshot(ckpt, remote)
    assert problem.file == "model.safetensors" and "not in the repo" in problem.message


def test_paths_leaving_the_directory_are_refused(tmp_path: Path) -> None:
    (problem,) = check_snapshot(tmp_path, [RemoteFile("../escape", 1, "0" * 40)])
    assert "leaves" in problem.message
