"""The storage integrity check on real hub processes: a healthy hub passes; a missing, truncated or corrupted blob
or xorb, and a commit naming a file that is not stored, are found, named, and make ``openckpt admin fsck`` exit 1."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from openckpt.hub.db.models import Blob, Xorb
from openckpt.hub.services.storage.fsck import FsckReport, check
from tests import zygote
from tests.hub.storagetools import XetUpload, api, commit_xet, database, store_of
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes


def _fsck(hub: HubProcess, *, deep: bool = False) -> FsckReport:
    with database(hub) as db:
        return check(db, store_of(hub), deep=deep)


def _cli(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "openckpt.cli.app", "admin", "fsck", *args, "--data-dir", str(hub.data_dir),
           "--database-url", hub.database_url]  # fmt: skip
    return zygote.run(cmd, capture_output=True, text=True, timeout=300)


def _problems(report: FsckReport, subject: str) -> set[str]:
    return {p.kind for p in report.problems if p.subject == subject}


@contextmanager
def _restored(path: Path, scratch: Path) -> Iterator[Path]:
    """Let the block damage ``path``; put its bytes back afterwards."""
    saved = scratch / f"saved-{path.name}"
    shutil.copy2(path, saved)
    try:
        yield path
    finally:
        shutil.copy2(saved, path)


def _upload(hub: HubProcess, repo: str, data: bytes) -> str:
    api(hub).upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo)
    return hashlib.sha256(data).hexdigest()


def test_a_healthy_hub_passes(hub: HubProcess, unique: str) -> None:
    repo = f"admin/{unique}"
    api(hub).create_repo(repo)
    _upload(hub, repo, opaque_bytes(150_000))
    api(hub).upload_file(path_or_fileobj=b"# hello\n", path_in_repo="README.md", repo_id=repo)
    commit_xet(hub, repo, XetUpload(opaque_bytes(200_000)), "x.bin")
    report = _fsck(hub, deep=True)
    assert report.ok, report.problems
    assert report.checked["blobs"] >= 3 and report.checked["xorbs"] >= 1 and report.checked["commit_files"] >= 4
    done = _cli(hub, "--deep")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no problems" in done.stdout


def test_missing_and_damaged_blobs_are_found(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    repo = f"admin/{unique}"
    api(hub).create_repo(repo)
    sha256 = _upload(hub, repo, opaque_bytes(160_000))
    path = store_of(hub).path_of(sha256)
    subject = f"blob {sha256}"
    with _restored(path, tmp_path):
        path.unlink()
        found = _cli(hub, "--json")
        assert found.returncode == 1, found.stderr
        problems = json.loads(found.stdout)["problems"]
        assert {"kind": "missing", "subject": subject,
                "detail": "no store object, and no verified Xet file holds these bytes"} in problems  # fmt: skip
        table = _cli(hub)
        assert table.returncode == 1 and sha256 in table.stdout
    with _restored(path, tmp_path):
        data = bytearray(path.read_bytes())
        data[1000] ^= 0xFF
        path.write_bytes(bytes(data))
        assert _problems(_fsck(hub), subject) == set()  # same size: only a deep check reads the bytes
        assert _problems(_fsck(hub, deep=True), subject) == {"hash"}
    with _restored(path, tmp_path):
        path.write_bytes(path.read_bytes()[:-1])
        assert _problems(_fsck(hub), subject) == {"size"}
    assert _fsck(hub, deep=True).ok


def test_damaged_xorbs_and_dangling_files_are_found(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    repo = f"admin/{unique}"
    api(hub).create_repo(repo)
    up = XetUpload(opaque_bytes(300_000))
    commit_xet(hub, repo, up, "x.bin")
    with database(hub) as db, db.read() as session:
        blob = session.scalar(select(Xorb.blob_sha256).where(Xorb.hash == up.xorb_hex))
    assert blob is not None
    path, subject = store_of(hub).path_of(blob), f"xorb {up.xorb_hex}"
    with _restored(path, tmp_path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        assert _problems(_fsck(hub), subject) == set()
        assert _problems(_fsck(hub, deep=True), subject) == {"hash"}
    with _restored(path, tmp_path):
        path.write_bytes(path.read_bytes()[:-10])
        assert _problems(_fsck(hub), subject) == {"size"}
    with _restored(path, tmp_path):
        path.unlink()
        assert _problems(_fsck(hub), subject) == {"missing"}
        assert _cli(hub).returncode == 1

    sha256 = _upload(hub, repo, opaque_bytes(170_000))
    with database(hub) as db:
        with db.write() as session:  # the row of a committed file disappears (as if swept by mistake)
            row = session.get(Blob, sha256)
            assert row is not None
            size = row.size
            session.delete(row)
        try:
            report = check(db, store_of(hub))
            assert _problems(report, f"file {sha256}") == {"dangling"}
            assert any(repo in p.detail and "w.bin" in p.detail for p in report.problems)
            assert report.unreferenced_objects >= 1  # its bytes are still there, named by no row
        finally:
            with db.write() as session:
                session.add(Blob(sha256=sha256, size=size))
    assert _fsck(hub, deep=True).ok
