"""Garbage collection on real hub processes (SQLite and PostgreSQL) with the stock client: what no commit reaches
goes once the grace period has passed, history and uploads in flight stay, killed uploads' leftovers are reclaimed,
one collection runs at a time, and the server collects on a schedule."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from huggingface_hub import hf_hub_download
from sqlalchemy import select

from openckpt.errors import StorageBusyError
from openckpt.hub.db.models import Blob, Lease, LfsPart, XetFile, Xorb
from openckpt.hub.services.storage import leases
from openckpt.hub.services.storage.fsck import check
from openckpt.hub.services.storage.gc import GC_LEASE, GcReport, collect, keep_alive
from openckpt.hub.services.storage.schedule import SCHEDULE_LEASE
from openckpt.store.url import open_store
from tests import zygote
from tests.hub.storagetools import (
    XetUpload,
    age_everything,
    api,
    commit_lfs,
    commit_xet,
    complete_parts,
    database,
    put_part,
    put_xet,
    restart_hub,
    store_of,
    write_orphan,
)
from tests.hubtools import HubProcess, S3Server, start_hub
from tests.testdata import opaque_bytes

GRACE = timedelta(hours=1)
AGED = timedelta(hours=2)
MB = 1 << 20


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gc(hub: HubProcess, **kwargs: object) -> GcReport:
    with database(hub) as db:
        return collect(db, store_of(hub), multipart_dir=hub.data_dir / "multipart", **kwargs)  # type: ignore[arg-type]


def _cli(hub: HubProcess, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "openckpt.cli.app", "admin", *args, "--data-dir", str(hub.data_dir),
           "--database-url", hub.database_url]  # fmt: skip
    return zygote.run(cmd, capture_output=True, text=True, timeout=300)


def _downloads(hub: HubProcess, repo: str, path: str, data: bytes, cache: Path, revision: str = "main") -> None:
    local = hf_hub_download(repo, path, revision=revision, endpoint=hub.url, token=hub.token, cache_dir=cache)
    assert _sha(Path(local).read_bytes()) == _sha(data), f"{path}@{revision} came back different"


def _age(path: Path, by: timedelta) -> None:
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        st = p.stat()
        os.utime(p, (st.st_atime - by.total_seconds(), st.st_mtime - by.total_seconds()))


def test_unreachable_data_goes_after_the_grace_period_history_stays(
    hub: HubProcess, unique: str, tmp_path: Path
) -> None:
    hf, store = api(hub), store_of(hub)
    keep, gone = f"admin/{unique}-keep", f"admin/{unique}-gone"
    shared, only_gone, on_dev, deleted_later = (opaque_bytes(n) for n in (150_000, 160_000, 170_000, 180_000))
    for repo in (keep, gone):
        hf.create_repo(repo)
    hf.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id=keep)
    hf.upload_file(path_or_fileobj=deleted_later, path_in_repo="old.bin", repo_id=keep)
    before_delete = hf.list_repo_commits(keep)[0].commit_id
    hf.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id=gone)
    hf.upload_file(path_or_fileobj=only_gone, path_in_repo="only.bin", repo_id=gone)
    hf.create_branch(keep, branch="dev")
    hf.upload_file(path_or_fileobj=on_dev, path_in_repo="dev.bin", repo_id=keep, revision="dev")
    hf.delete_file("old.bin", repo_id=keep)  # gone from main, still in its history
    hf.delete_branch(keep, branch="dev")  # its own commit is unreachable now
    hf.delete_repo(gone)
    never_committed = XetUpload(opaque_bytes(90_000))
    put_xet(hub, keep, never_committed)  # a client that uploaded xorb and shard, then never committed
    old_orphan = write_orphan(hub, opaque_bytes(1000), age=AGED)  # a server killed between store and row
    young_orphan = write_orphan(hub, opaque_bytes(1000))  # an upload in flight
    temp = hub.data_dir / "store" / "tmp" / "abandoned"
    temp.write_bytes(b"partial")
    parts = hub.data_dir / "multipart" / ("ab" * 32)
    parts.mkdir(parents=True)
    (parts / "000001").write_bytes(b"part")
    _age(temp, AGED)
    _age(parts, AGED)

    first = _gc(hub, grace=GRACE)  # all rows are young: only what is older than an hour goes
    assert (first.commits, first.blobs, first.xorbs, first.xet_files) == (0, 0, 0, 0), first
    assert first.orphans >= 1 and first.abandoned >= 2
    assert not store.exists(old_orphan) and store.exists(young_orphan)
    assert not temp.exists() and not parts.exists()
    assert store.exists(_sha(only_gone)) and store.exists(_sha(on_dev))

    age_everything(hub, AGED)  # the hour passes
    second = _gc(hub, grace=GRACE)
    assert second.commits >= 1 and second.blobs >= 2 and second.xorbs >= 1 and second.xet_files >= 1, second
    assert second.bytes_reclaimed >= len(only_gone) + len(on_dev) + 1000
    assert not store.exists(_sha(only_gone)) and not store.exists(_sha(on_dev)) and not store.exists(young_orphan)
    assert store.exists(_sha(shared)) and store.exists(_sha(deleted_later))
    with database(hub) as db, db.read() as session:
        assert session.get(Blob, _sha(only_gone)) is None and session.get(Blob, _sha(shared)) is not None
        assert session.get(Xorb, never_committed.xorb_hex) is None
        assert session.get(XetFile, never_committed.file_hex) is None
        assert check(db, store).ok
    _downloads(hub, keep, "shared.bin", shared, tmp_path)
    _downloads(hub, keep, "old.bin", deleted_later, tmp_path, revision=before_delete)  # history stays downloadable
    assert _gc(hub, grace=GRACE).bytes_reclaimed == 0  # nothing left to take


def _upload_in_parts(hub: HubProcess, repo: str, data: bytes, path: str, chunk: int = 40_000) -> None:
    """Upload ``data`` as an LFS multipart upload of ``chunk``-byte parts, then commit it at ``path``."""
    numbers = range(1, -(-len(data) // chunk) + 1)
    etags = [put_part(hub, _sha(data), len(data), n, data[(n - 1) * chunk : n * chunk]) for n in numbers]
    done = complete_parts(hub, _sha(data), len(data), etags)
    assert done.status_code == 200, done.text
    commit_lfs(hub, repo, path, _sha(data), len(data))


def _parts(hub: HubProcess, sha256: str) -> dict[int, str]:
    """The recorded parts of the LFS multipart upload of ``sha256``: number → the blob holding it."""
    with database(hub) as db, db.read() as session:
        rows = session.execute(select(LfsPart.number, LfsPart.part_sha256).where(LfsPart.sha256 == sha256))
        return {number: key for number, key in rows}


def test_parts_of_uploads_in_progress_stay_abandoned_ones_go(hub: HubProcess) -> None:
    store, chunk = store_of(hub), 70_000
    going, stale = opaque_bytes(2 * chunk + 500), opaque_bytes(chunk + 10)
    with database(hub) as db:
        unreferenced = check(db, store).unreferenced_objects
    etags = [put_part(hub, _sha(going), len(going), n, going[(n - 1) * chunk : n * chunk]) for n in (1, 2, 3)]
    assert etags[0] == hashlib.md5(going[:chunk]).hexdigest()
    put_part(hub, _sha(stale), len(stale), 1, stale[:chunk])  # part 2 never comes
    kept, dropped = _parts(hub, _sha(going)), _parts(hub, _sha(stale))
    assert sorted(kept) == [1, 2, 3] and sorted(dropped) == [1]
    assert not store.exists(_sha(going[:chunk]))  # a part is stored under a name of its own, never as its bytes'
    with database(hub) as db:
        report = check(db, store)
        assert report.ok and report.checked["lfs_parts"] >= 4, report.problems
        assert report.unreferenced_objects == unreferenced  # recorded parts are not garbage
        with db.write() as session:  # the upload in progress began 90 minutes ago, the abandoned one 3 hours ago
            for row in session.scalars(select(LfsPart).where(LfsPart.sha256.in_([_sha(going), _sha(stale)]))):
                row.created_at -= timedelta(minutes=90) if row.sha256 == _sha(going) else timedelta(hours=3)
    for key in [*kept.values(), *dropped.values()]:
        _age(store.path_of(key), AGED)  # the objects alone are older than the grace period: their rows keep them

    _gc(hub, grace=GRACE, dry_run=True)
    assert all(store.exists(key) for key in [*kept.values(), *dropped.values()])  # a dry run deletes nothing
    report = _gc(hub, grace=GRACE, url_ttl=timedelta(hours=1))  # abandoned: recorded over 1 h + 1 h ago
    assert report.abandoned >= 1, report
    assert _parts(hub, _sha(going)) == kept and all(store.exists(key) for key in kept.values())
    assert _parts(hub, _sha(stale)) == {} and not any(store.exists(key) for key in dropped.values())
    gone = complete_parts(hub, _sha(stale), len(stale), ["", ""])
    assert gone.status_code == 400 and "part 1 was not uploaded" in gone.text, gone.text

    done = complete_parts(hub, _sha(going), len(going), etags)
    assert done.status_code == 200, done.text
    assert _sha(b"".join(store.read(_sha(going)))) == _sha(going)
    assert _parts(hub, _sha(going)) == {} and not any(store.exists(key) for key in kept.values())
    with database(hub) as db:
        assert check(db, store).ok


def test_cli_dry_run_then_collect(hub: HubProcess, unique: str) -> None:
    hf, store = api(hub), store_of(hub)
    repo, data = f"admin/{unique}", opaque_bytes(210_000)
    hf.create_repo(repo)
    hf.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo)
    hf.delete_repo(repo)
    age_everything(hub, AGED)

    dry = _cli(hub, "gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] and planned["blobs"] >= 1 and planned["bytes_reclaimed"] >= len(data)
    assert store.exists(_sha(data))  # a dry run deletes nothing
    table = _cli(hub, "gc", "--dry-run")
    assert table.returncode == 0 and "would remove" in table.stdout

    done = _cli(hub, "gc", "--grace", "30m", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["blob_bytes"] >= len(data)
    assert not store.exists(_sha(data))
    again = json.loads(_cli(hub, "gc", "--dry-run", "--json").stdout)
    assert (again["commits"], again["blobs"], again["xorbs"], again["orphans"]) == (0, 0, 0, 0), again
    bad = _cli(hub, "gc", "--grace", "soon")
    assert bad.returncode == 2 and "duration" in bad.stderr


def test_one_collection_at_a_time(hub: HubProcess) -> None:
    with database(hub) as db:
        assert leases.acquire(db, GC_LEASE, "another server", timedelta(minutes=5))
        try:
            with pytest.raises(StorageBusyError):
                collect(db, store_of(hub))
            busy = _cli(hub, "gc")
            assert busy.returncode == 5 and "StorageBusyError" in busy.stderr
            assert collect(db, store_of(hub), dry_run=True).dry_run  # counting needs no lease
        finally:
            leases.release(db, GC_LEASE, "another server")
        assert leases.acquire(db, "held", "a", timedelta(minutes=1))
        assert not leases.acquire(db, "held", "b", timedelta(minutes=1))  # held by another
        assert leases.acquire(db, "held", "a", timedelta(minutes=1))  # renewed by its holder
        assert leases.acquire(db, "expired", "a", timedelta(seconds=-1))
        assert leases.acquire(db, "expired", "b", timedelta(minutes=1))  # expired: anyone may take it
        leases.release(db, "held", "a")
        leases.release(db, "expired", "b")


def test_collection_during_uploads_keeps_everything_referenced_or_in_flight(
    hub: HubProcess, unique: str, tmp_path: Path
) -> None:
    hf, store = api(hub), store_of(hub)
    junk, repo = f"admin/{unique}-junk", f"admin/{unique}"
    hf.create_repo(junk)
    for i in range(4):  # aged garbage, so that the collections below really sweep while uploads run
        hf.upload_file(path_or_fileobj=opaque_bytes(50_000 + i), path_in_repo=f"j{i}.bin", repo_id=junk)
    hf.delete_repo(junk)
    age_everything(hub, AGED)
    hf.create_repo(repo)
    files = {f"f{i}.bin": opaque_bytes(60_000 + i) for i in range(8)}
    files["README.md"] = b"# regular, inline file\n"
    xets = [XetUpload(opaque_bytes(80_000 + i)) for i in range(4)]
    multipart = {f"m{i}.bin": opaque_bytes(130_000 + i) for i in range(2)}
    stop, reports, failures = threading.Event(), [], []

    def collect_repeatedly() -> None:
        with database(hub) as db:
            while not stop.is_set():
                try:
                    reports.append(collect(db, store, grace=timedelta(minutes=5)))
                except StorageBusyError:  # PostgreSQL: the locks were not granted in time; the next round will do
                    time.sleep(0.05)
                except Exception as e:  # reported by the assertion below
                    failures.append(e)
                    return

    collector = threading.Thread(target=collect_repeatedly)
    collector.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            jobs = [
                pool.submit(hf.upload_file, path_or_fileobj=d, path_in_repo=p, repo_id=repo) for p, d in files.items()
            ]
            jobs += [pool.submit(commit_xet, hub, repo, up, f"x{i}.bin") for i, up in enumerate(xets[:2])]
            jobs += [pool.submit(put_xet, hub, repo, up) for up in xets[2:]]  # in flight: registered, not committed
            jobs += [pool.submit(_upload_in_parts, hub, repo, data, path) for path, data in multipart.items()]
            for job in jobs:
                job.result()
    finally:
        stop.set()
        collector.join(120)
    assert not failures, failures
    assert len(reports) >= 2 and sum(r.blobs for r in reports) >= 4  # the junk went meanwhile
    for path, data in [*files.items(), *multipart.items()]:
        _downloads(hub, repo, path, data, tmp_path)
    for i, up in enumerate(xets[:2]):
        _downloads(hub, repo, f"x{i}.bin", up.data, tmp_path)
    final = _gc(hub, grace=timedelta(minutes=5))
    with database(hub) as db, db.read() as session:
        for up in xets[2:]:  # uploads between shard and commit keep their xorbs
            assert session.get(Xorb, up.xorb_hex) is not None and session.get(XetFile, up.file_hex) is not None
            assert store.exists(session.get(Xorb, up.xorb_hex).blob_sha256)  # type: ignore[union-attr]
        assert check(db, store).ok, check(db, store).problems
    assert final.blobs == 0 and final.xorbs == 0


def _lfs_upload_url(hub: HubProcess, repo: str, sha256: str, size: int) -> str:
    body = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": sha256, "size": size}]}
    headers = {"authorization": f"Bearer {hub.token}", "accept": "application/vnd.git-lfs+json"}
    r = httpx.post(f"{hub.url}/{repo}.git/info/lfs/objects/batch", json=body, headers=headers)
    assert r.status_code == 200, r.text
    href: str = r.json()["objects"][0]["actions"]["upload"]["href"]
    return href


def test_a_killed_upload_leaves_orphans_that_gc_reclaims_after_grace(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    hub = start_hub(data_dir)
    data = opaque_bytes(12 * MB)
    try:
        api(hub).create_repo("admin/killed")
        href = _lfs_upload_url(hub, "admin/killed", _sha(data), len(data))
        sent, killed = threading.Event(), threading.Event()

        def body():  # type: ignore[no-untyped-def]
            for i in range(6):
                yield data[i * MB : (i + 1) * MB]
            sent.set()
            killed.wait(60)
            yield data[6 * MB :]

        def put() -> None:
            with suppress(httpx.HTTPError):
                httpx.put(href, content=body(), timeout=60)

        uploader = threading.Thread(target=put)
        uploader.start()
        assert sent.wait(60)
        temp = data_dir / "store" / "tmp"
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size for p in temp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.process is not None
        hub.process.kill()  # mid-upload
        hub.process.wait()
        killed.set()
        uploader.join(60)
        partial = list(temp.iterdir())
        assert partial and sum(p.stat().st_size for p in partial) > 0
        hub = restart_hub(hub)
        with database(hub) as db, db.read() as session:
            assert session.get(Blob, _sha(data)) is None  # nothing partial is visible
        api(hub).upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/killed")  # the retry works

        assert _gc(hub, grace=GRACE).abandoned == 0 and all(p.exists() for p in partial)  # young: maybe in flight
        for p in partial:
            _age(p, AGED)
        assert _gc(hub, grace=GRACE).abandoned == len(partial)
        assert not any(p.exists() for p in partial)
        _downloads(hub, "admin/killed", "w.bin", data, tmp_path / "cache")
    finally:
        hub.stop()


def test_the_server_collects_on_a_schedule_in_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCKPT_GC_INTERVAL", "1")
    monkeypatch.setenv("OPENCKPT_GC_GRACE", "2")
    hub = start_hub(tmp_path / "data", workers=2)
    try:
        hf, data = api(hub), opaque_bytes(120_000)
        hf.create_repo("admin/scheduled")
        hf.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/scheduled")
        keep = opaque_bytes(130_000)
        hf.create_repo("admin/kept")
        hf.upload_file(path_or_fileobj=keep, path_in_repo="k.bin", repo_id="admin/kept")
        hf.delete_repo("admin/scheduled")
        store, deadline = store_of(hub), time.monotonic() + 60
        while store.exists(_sha(data)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not store.exists(_sha(data)), "the scheduled collection did not run"
        assert store.exists(_sha(keep))
        with database(hub) as db, db.read() as session:
            lease = session.scalar(select(Lease).where(Lease.name == SCHEDULE_LEASE))
            assert lease is not None and lease.holder
        _downloads(hub, "admin/kept", "k.bin", keep, tmp_path / "cache")
    finally:
        hub.stop()


def test_on_s3_unused_objects_orphans_and_abandoned_uploads_go(s3: S3Server, tmp_path: Path) -> None:
    prefix = f"gc-{uuid.uuid4().hex[:8]}/"
    hub = start_hub(tmp_path / "data", storage_url=s3.storage_url(prefix))
    try:
        hf, kept, dropped = api(hub), opaque_bytes(140_000), opaque_bytes(150_000)
        for name, data in (("kept", kept), ("dropped", dropped)):
            hf.create_repo(f"admin/{name}")
            hf.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=f"admin/{name}")
        hf.delete_repo("admin/dropped")
        bucket, client, orphan = s3.bucket, s3.client(), opaque_bytes(2000)
        client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}blobs/{'cd' * 32}")  # a killed server's upload
        client.put_object(Bucket=bucket, Key=f"{prefix}tmp/abandoned", Body=b"partial")
        client.put_object(Bucket=bucket, Key=f"{prefix}blobs/{_sha(orphan)}", Body=orphan)  # stored, never recorded
        store = open_store(s3.storage_url(prefix), tmp_path)
        with database(hub) as db:
            young = collect(db, store, grace=GRACE)
            assert (young.blobs, young.orphans) == (0, 0)
            assert f"{prefix}tmp/abandoned" in s3.keys(prefix)  # (moto dates every multipart upload 2010: gone)
            age_everything(hub, AGED)  # the rows' hour passes; the objects' cannot be faked: grace 0 below
            report = collect(db, store, grace=timedelta(0))
        assert report.blobs >= 1 and report.orphans >= 1 and report.abandoned >= 1, report
        keys = set(s3.keys(prefix))
        assert f"{prefix}blobs/{_sha(kept)}" in keys
        assert f"{prefix}blobs/{_sha(dropped)}" not in keys and f"{prefix}blobs/{_sha(orphan)}" not in keys
        assert not [k for k in keys if k.startswith(f"{prefix}tmp/")] and not s3.pending_uploads(prefix)
        _downloads(hub, "admin/kept", "w.bin", kept, tmp_path / "cache")
    finally:
        hub.stop()


def test_keep_alive_restarts_the_grace_period(hub: HubProcess, unique: str) -> None:
    hf, store = api(hub), store_of(hub)
    repo, data, up = f"admin/{unique}", opaque_bytes(110_000), XetUpload(opaque_bytes(95_000))
    hf.create_repo(repo)
    hf.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id=repo)
    put_xet(hub, repo, up)
    hf.delete_repo(repo)
    age_everything(hub, AGED)
    with database(hub) as db:
        with db.write() as session:  # what an LFS batch or CAS upload answering "already stored" would do
            keep_alive(session, blobs=[_sha(data)], xorbs=[up.xorb_hex], files=[up.file_hex])
        _gc(hub, grace=GRACE)
        with db.read() as session:
            assert session.get(Blob, _sha(data)) is not None and session.get(Xorb, up.xorb_hex) is not None
            assert session.get(XetFile, up.file_hex) is not None
    assert store.exists(_sha(data))
    age_everything(hub, AGED)
    _gc(hub, grace=GRACE)
    assert not store.exists(_sha(data))
