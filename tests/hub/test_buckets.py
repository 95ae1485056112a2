"""Buckets through the stock client against a live hub (SQLite and PostgreSQL): every bucket call of ``HfApi``, the
``hf buckets`` and ``hf sync`` commands, uploads through Xet that deduplicate with everything else, copies by Xet
hash that move no bytes, privacy and org roles, and what garbage collection and storage accounting make of them."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub._buckets import BucketFile, BucketFolder
from huggingface_hub.errors import BucketBatchError, BucketNotFoundError, HfHubHTTPError
from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
from sqlalchemy import select

from openckpt.hub.db import models
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Bucket, Repo, XetFile, Xorb
from openckpt.hub.services.buckets.files import list_tree
from openckpt.hub.services.storage.accounting import account, account_repo
from openckpt.hub.services.storage.gc import GcReport, collect
from tests.hub.conftest import People, client_env, run_checked
from tests.hub.storagetools import age_everything, database, store_of
from tests.hubtools import HubProcess

AGED = timedelta(hours=2)
MALICIOUS = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R."
"""A pickle that would run ``os.system`` (built by hand, never loaded)."""


@pytest.fixture(autouse=True)
def _xet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Repo uploads through Xet too, as by default (tests/conftest.py turns it off), and no progress bars."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    disable_progress_bars()
    yield
    enable_progress_bars()


def _api(hub: HubProcess, token: str | None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or False)


def _gc(hub: HubProcess) -> GcReport:
    with database(hub) as db:
        return collect(db, store_of(hub))


def test_create_upload_list_download(hub: HubProcess, people: People, tmp_path: Path, unique: str) -> None:
    alice = _api(hub, people.alice)
    url = alice.create_bucket(unique, private=True)
    assert (url.bucket_id, url.url) == (f"alice/{unique}", f"{hub.url}/buckets/alice/{unique}")
    assert alice.create_bucket(f"alice/{unique}", exist_ok=True).bucket_id == f"alice/{unique}"
    bucket = f"alice/{unique}"
    weights = os.urandom(3_000_000)
    (tmp_path / "w.bin").write_bytes(weights)
    alice.batch_bucket_files(bucket, add=[(tmp_path / "w.bin", "ckpt/w.bin"), (b"step-1", "LATEST"), (b"", "e/.keep")])

    info = alice.bucket_info(bucket)
    assert (info.id, info.private, info.size, info.total_files) == (bucket, True, 3_000_006, 3)
    top = list(alice.list_bucket_tree(bucket))
    assert [(type(e), e.path) for e in top] == [(BucketFile, "LATEST"), (BucketFolder, "ckpt"), (BucketFolder, "e")]
    everything = {e.path: e for e in alice.list_bucket_tree(bucket, recursive=True)}
    assert set(everything) == {"LATEST", "ckpt/w.bin", "e/.keep"}
    assert isinstance(everything["ckpt/w.bin"], BucketFile) and everything["ckpt/w.bin"].size == 3_000_000
    assert [f.path for f in alice.get_bucket_paths_info(bucket, ["LATEST", "missing", "ckpt/w.bin"])] == [
        "LATEST",
        "ckpt/w.bin",
    ]
    meta = alice.get_bucket_file_metadata(bucket, "ckpt/w.bin")
    assert (meta.size, meta.xet_file_data.file_hash) == (3_000_000, everything["ckpt/w.bin"].xet_hash)

    out = tmp_path / "out"
    alice.download_bucket_files(
        bucket, [("ckpt/w.bin", out / "w.bin"), (everything["LATEST"], out / "LATEST"), ("e/.keep", out / "keep")]
    )
    assert (out / "w.bin").read_bytes() == weights
    assert (out / "LATEST").read_bytes() == b"step-1"
    assert (out / "keep").read_bytes() == b""
    assert [b.id for b in alice.list_buckets()] == [bucket] or bucket in [b.id for b in alice.list_buckets()]


def _count(hub: HubProcess, model: type) -> int:
    with database(hub) as db, db.read() as session:
        return len(session.scalars(select(model)).all())


def test_overwrite_delete_and_listing_pages(hub: HubProcess, people: People, unique: str) -> None:
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique).bucket_id
    alice.batch_bucket_files(bucket, add=[(b"v1", "a/x.txt"), (b"keep", "a/y.txt"), (b"json", "a.json")])
    first = next(iter(alice.get_bucket_paths_info(bucket, ["a/x.txt"])))
    alice.batch_bucket_files(bucket, add=[(b"v2 longer", "a/x.txt")], delete=["a/y.txt", "never/was.txt"])
    now = {f.path: f for f in alice.list_bucket_tree(bucket, recursive=True)}
    assert set(now) == {"a/x.txt", "a.json"} and now["a/x.txt"].size == 9
    assert now["a/x.txt"].xet_hash != first.xet_hash
    # prefixes match as strings, as on the Hub ("a" also lists "a.json"); folders one level below the prefix
    assert [(type(e).__name__, e.path) for e in alice.list_bucket_tree(bucket, prefix="a")] == [
        ("BucketFile", "a.json"),
        ("BucketFile", "a/x.txt"),
    ]
    assert [e.path for e in alice.list_bucket_tree(bucket, prefix="a/")] == ["a/x.txt"]

    # 1,500 files: the client sends the copies in two batches and reads the listings in pages (Link)
    copies = [("bucket", bucket, now["a.json"].xet_hash, f"many/{i:04d}/f.json") for i in range(1500)]
    before = _count(hub, Xorb)
    alice.batch_bucket_files(bucket, copy=copies)
    assert _count(hub, Xorb) == before  # copies name the Xet file: no bytes move
    listed = [e.path for e in alice.list_bucket_tree(bucket, prefix="many", recursive=True)]
    assert listed == [f"many/{i:04d}/f.json" for i in range(1500)]
    folders = list(alice.list_bucket_tree(bucket, prefix="many"))
    assert [f.path for f in folders] == [f"many/{i:04d}" for i in range(1500)]
    assert all(isinstance(f, BucketFolder) for f in folders)
    first_page = httpx.get(f"{hub.url}/api/buckets/{bucket}/tree/many?recursive=true", timeout=60)
    assert len(first_page.json()) == 1000 and 'rel="next"' in first_page.headers["link"]
    assert alice.bucket_info(bucket).total_files == 1502


def test_uploads_dedup_with_repos_and_copies_move_no_bytes(
    hub: HubProcess, people: People, tmp_path: Path, unique: str
) -> None:
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique).bucket_id
    weights = os.urandom(2_000_000)
    (tmp_path / "w.bin").write_bytes(weights)
    alice.batch_bucket_files(bucket, add=[(tmp_path / "w.bin", "w.bin")])
    in_bucket = next(iter(alice.get_bucket_paths_info(bucket, ["w.bin"]))).xet_hash

    repo = f"alice/{unique}"
    alice.create_repo(repo)
    xorbs = _count(hub, Xorb)
    alice.upload_file(path_or_fileobj=tmp_path / "w.bin", path_in_repo="model.bin", repo_id=repo)
    assert _count(hub, Xorb) == xorbs  # the repo's upload found every chunk in the bucket's xorbs
    (entry,) = alice.get_paths_info(repo, ["model.bin"])
    assert entry.xet_hash == in_bucket

    other = alice.create_bucket(f"{unique}-copy").bucket_id
    alice.copy_files(f"hf://{repo}/model.bin", f"hf://buckets/{other}/from-repo.bin")  # repo → bucket
    alice.copy_files(f"hf://buckets/{bucket}/w.bin", f"hf://buckets/{other}/from-bucket.bin")  # bucket → bucket
    assert {f.path: f.xet_hash for f in alice.list_bucket_tree(other, recursive=True)} == {
        "from-bucket.bin": in_bucket,
        "from-repo.bin": in_bucket,
    }
    assert _count(hub, Xorb) == xorbs
    alice.download_bucket_files(other, [("from-repo.bin", tmp_path / "back.bin")])
    assert (tmp_path / "back.bin").read_bytes() == weights
    with pytest.raises(ValueError, match="Bucket-to-repo"):  # the client's own limit
        alice.copy_files(f"hf://buckets/{other}/from-repo.bin", f"hf://{repo}/again.bin")


def test_resolve_serves_bytes_and_ranges(hub: HubProcess, people: People, unique: str) -> None:
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique, private=True).bucket_id
    data = os.urandom(300_000)
    alice.batch_bucket_files(bucket, add=[(data, "d/blob.bin")])
    url, auth = f"{hub.url}/buckets/{bucket}/resolve/d%2Fblob.bin", {"authorization": f"Bearer {people.alice}"}
    head = httpx.head(url, headers=auth, timeout=60)
    assert head.status_code == 200 and head.headers["x-linked-size"] == "300000"
    assert 'rel="xet-auth"' in head.headers["link"]
    assert httpx.get(url, headers=auth, timeout=60).content == data
    part = httpx.get(url, headers={**auth, "range": "bytes=1000-1999"}, timeout=60)
    assert (part.status_code, part.content) == (206, data[1000:2000])
    assert httpx.head(url, timeout=60).status_code == 404  # private: as if absent
    missing = httpx.head(f"{hub.url}/buckets/{bucket}/resolve/nope", headers=auth, timeout=60)
    assert (missing.status_code, missing.headers["x-error-code"]) == (404, "EntryNotFound")


def test_private_buckets_and_org_roles(hub: HubProcess, people: People, unique: str) -> None:
    alice, bob, anon = _api(hub, people.alice), _api(hub, people.bob), _api(hub, None)
    private = alice.create_bucket(f"{unique}-p", private=True).bucket_id
    public = alice.create_bucket(f"{unique}-o").bucket_id
    alice.batch_bucket_files(private, add=[(b"secret weights", "w.bin")])
    secret = next(iter(alice.get_bucket_paths_info(private, ["w.bin"]))).xet_hash
    for who in (bob, anon):
        with pytest.raises(BucketNotFoundError):
            who.bucket_info(private)
        with pytest.raises(BucketNotFoundError):
            list(who.list_bucket_tree(private))
        assert private not in [b.id for b in who.list_buckets("alice")]
        assert public in [b.id for b in who.list_buckets("alice")]
    assert private in [b.id for b in alice.list_buckets()]
    with pytest.raises(BucketNotFoundError):
        bob.download_bucket_files(private, [("w.bin", "/tmp/never")], raise_on_missing_files=True)
    r = httpx.get(f"{hub.url}/api/buckets/{private}/xet-read-token", headers=_auth(people.bob), timeout=60)
    assert r.status_code == 404
    for token in (people.bob, people.alice_read):  # not a writer of alice's; a read-only token of hers
        with pytest.raises(HfHubHTTPError) as refused:
            _api(hub, token).batch_bucket_files(public, delete=["x"])
        assert refused.value.response.status_code == 403
        r = httpx.get(f"{hub.url}/api/buckets/{public}/xet-write-token", headers=_auth(token), timeout=60)
        assert r.status_code == 403

    # possession: bob may not name alice's private file, neither by copying it nor by adding its hash
    mine = bob.create_bucket(unique).bucket_id
    with pytest.raises(BucketBatchError) as failed:
        bob.batch_bucket_files(mine, copy=[("bucket", private, secret, "stolen.bin")])
    assert [f["path"] for f in failed.value.failures] == ["stolen.bin"]
    line = json.dumps({"type": "addFile", "path": "stolen.bin", "xetHash": secret, "mtime": 0})
    r = httpx.post(f"{hub.url}/api/buckets/{mine}/batch", content=line, headers=_auth(people.bob), timeout=60)
    assert r.status_code == 422 and r.json()["failed"][0]["path"] == "stolen.bin"
    token = httpx.get(f"{hub.url}/api/buckets/{mine}/xet-read-token", headers=_auth(people.bob), timeout=60).json()
    r = httpx.get(f"{token['casUrl']}/v1/reconstructions/{secret}", headers=_auth(token["accessToken"]), timeout=60)
    assert r.status_code == 404  # a token of bob's bucket reads that bucket's files only
    assert list(bob.list_bucket_tree(mine)) == []

    # an org's bucket: writers write, readers read, others see nothing
    shared = alice.create_bucket(f"lab/{unique}", private=True).bucket_id
    _api(hub, people.wendy).batch_bucket_files(shared, add=[(b"from wendy", "w.txt")])
    olga = _api(hub, people.olga)
    assert olga.bucket_info(shared).total_files == 1
    with pytest.raises(HfHubHTTPError) as refused:
        olga.batch_bucket_files(shared, delete=["w.txt"])
    assert refused.value.response.status_code == 403
    with pytest.raises(BucketNotFoundError):
        bob.bucket_info(shared)


def test_settings_move_and_delete(hub: HubProcess, people: People, unique: str) -> None:
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique, private=True).bucket_id
    alice.batch_bucket_files(bucket, add=[(b"data", "f.txt")])
    with pytest.raises(HfHubHTTPError) as exists:
        alice.create_bucket(bucket)
    assert exists.value.response.status_code == 409
    alice.update_bucket_settings(bucket, private=False)
    assert _api(hub, None).bucket_info(bucket).private is False

    alice.move_bucket(bucket, f"alice/{unique}-renamed")
    with pytest.raises(BucketNotFoundError):
        alice.bucket_info(bucket)
    alice.move_bucket(f"alice/{unique}-renamed", f"lab/{unique}")  # alice admins lab
    assert [f.path for f in alice.list_bucket_tree(f"lab/{unique}")] == ["f.txt"]
    with pytest.raises(HfHubHTTPError) as refused:  # wendy writes in lab but does not admin it
        _api(hub, people.wendy).move_bucket(f"lab/{unique}", f"lab/{unique}-2")
    assert refused.value.response.status_code == 403

    alice.delete_bucket(f"lab/{unique}")
    with pytest.raises(BucketNotFoundError):
        alice.bucket_info(f"lab/{unique}")
    alice.delete_bucket(f"lab/{unique}", missing_ok=True)
    with pytest.raises(BucketNotFoundError):
        alice.delete_bucket(f"lab/{unique}")


def test_sync_bucket_up_and_down(hub: HubProcess, people: People, tmp_path: Path, unique: str) -> None:
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique).bucket_id
    src = tmp_path / "run"
    (src / "step-1").mkdir(parents=True)
    (src / "step-1" / "model.bin").write_bytes(os.urandom(500_000))
    (src / "LATEST").write_text("step-1")
    plan = alice.sync_bucket(str(src), f"hf://buckets/{bucket}/runs/a", quiet=True)
    assert plan.summary()["uploads"] == 2
    assert alice.sync_bucket(str(src), f"hf://buckets/{bucket}/runs/a", quiet=True).summary()["uploads"] == 0

    (src / "LATEST").unlink()
    (src / "notes.txt").write_text("more")
    plan = alice.sync_bucket(str(src), f"hf://buckets/{bucket}/runs/a", delete=True, quiet=True)
    assert (plan.summary()["uploads"], plan.summary()["deletes"]) == (1, 1)
    back = tmp_path / "back"
    alice.sync_bucket(f"hf://buckets/{bucket}/runs/a", str(back), quiet=True)
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*") if p.is_file()) == ["notes.txt", "step-1/model.bin"]
    assert (back / "step-1" / "model.bin").read_bytes() == (src / "step-1" / "model.bin").read_bytes()


def _hf(hub: HubProcess, token: str, home: Path, *args: str) -> str:
    env = client_env(hub.url, home, HF_TOKEN=token)
    env.pop("HF_HUB_DISABLE_XET")  # buckets are Xet storage
    return run_checked([str(Path(sys.executable).with_name("hf")), *args], env=env)


def test_hf_buckets_and_hf_sync_commands(hub: HubProcess, people: People, tmp_path: Path, unique: str) -> None:
    home, bucket = tmp_path / "home", f"alice/{unique}"
    _hf(hub, people.alice, home, "buckets", "create", bucket, "--private")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "d" / "b.bin").write_bytes(os.urandom(200_000))
    _hf(hub, people.alice, home, "sync", str(src), f"hf://buckets/{bucket}")
    listed = _hf(hub, people.alice, home, "buckets", "list", bucket, "-R")
    assert "a.txt" in listed and "d/b.bin" in listed
    assert unique in _hf(hub, people.alice, home, "buckets", "list")
    assert "total_files" in _hf(hub, people.alice, home, "buckets", "info", bucket)
    _hf(hub, people.alice, home, "buckets", "sync", f"hf://buckets/{bucket}", str(tmp_path / "back"))
    assert (tmp_path / "back" / "d" / "b.bin").read_bytes() == (src / "d" / "b.bin").read_bytes()
    _hf(hub, people.alice, home, "cp", f"hf://buckets/{bucket}/a.txt", str(tmp_path / "a-copy.txt"))
    assert (tmp_path / "a-copy.txt").read_text() == "alpha"
    _hf(hub, people.alice, home, "buckets", "rm", f"{bucket}/a.txt", "--yes")
    _hf(hub, people.alice, home, "buckets", "settings", bucket, "--public")
    _hf(hub, people.alice, home, "buckets", "move", bucket, f"{bucket}-moved")
    info = _api(hub, None).bucket_info(f"{bucket}-moved")
    assert (info.private, info.total_files) == (False, 1)
    _hf(hub, people.alice, home, "buckets", "delete", f"{bucket}-moved", "--yes")
    with pytest.raises(BucketNotFoundError):
        _api(hub, people.alice).bucket_info(f"{bucket}-moved")


def test_gc_keeps_what_buckets_name_and_collects_what_they_dropped(
    hub: HubProcess, people: People, unique: str
) -> None:
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique).bucket_id
    old, new = os.urandom(400_000), os.urandom(400_000)
    alice.batch_bucket_files(bucket, add=[(old, "ckpt.bin"), (b"tiny", "gone.txt")])
    old_hash = next(iter(alice.get_bucket_paths_info(bucket, ["ckpt.bin"]))).xet_hash
    alice.batch_bucket_files(bucket, add=[(new, "ckpt.bin")], delete=["gone.txt"])  # overwrite and delete
    new_hash = next(iter(alice.get_bucket_paths_info(bucket, ["ckpt.bin"]))).xet_hash

    age_everything(hub, AGED)
    report = _gc(hub)
    assert report.xet_files >= 2 and report.xorb_bytes > 0
    with database(hub) as db, db.read() as session:
        assert session.get(XetFile, old_hash) is None
        assert session.get(XetFile, new_hash) is not None
    out = Path(hub.data_dir.parent / f"{unique}.bin")
    alice.download_bucket_files(bucket, [("ckpt.bin", out)])
    assert out.read_bytes() == new

    alice.delete_bucket(bucket)
    age_everything(hub, AGED)
    _gc(hub)
    with database(hub) as db, db.read() as session:
        assert session.get(XetFile, new_hash) is None


def test_storage_accounting_counts_buckets(hub: HubProcess, people: People, unique: str) -> None:
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique).bucket_id
    data = os.urandom(500_000)
    alice.batch_bucket_files(bucket, add=[(data, "a.bin")])
    xet_hash = next(iter(alice.get_bucket_paths_info(bucket, ["a.bin"]))).xet_hash
    alice.batch_bucket_files(bucket, copy=[("bucket", bucket, xet_hash, "again/a.bin")])
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    alice.upload_file(path_or_fileobj=data, path_in_repo="a.bin", repo_id=repo)

    with database(hub) as db:
        report = account(db, store_of(hub)).as_dict()
    (entry,) = [b for b in report["buckets"] if b["id"] == bucket]
    (shared,) = [r for r in report["repos"] if r["id"] == repo]
    assert (entry["logicalBytes"], entry["historyBytes"], entry["files"]) == (1_000_000, 500_000, 1)
    assert entry["uniqueBytes"] == 0 and entry["sharedBytes"] > 0  # its xorbs also hold the repo's file
    assert 240_000 < entry["physicalBytes"] < 260_000  # half of the xorb of the 500 kB both hold
    with database(hub) as db:
        assert account_repo(db, store_of(hub), repo_pk=_repo_pk(db, repo)).physical_bytes == pytest.approx(
            shared["physicalBytes"], abs=1
        )
    listed = {(r.type, r.id): r.storage for r in alice.list_user_repos()}  # with their storage, as the Hub lists
    assert listed[("bucket", bucket)] == entry["physicalBytes"]
    assert listed[("model", repo)] == shared["physicalBytes"]
    total = report["total"]
    assert total["buckets"] >= 1
    everything = [*report["repos"], *report["buckets"]]
    assert sum(r["physicalBytes"] for r in everything) == pytest.approx(total["physicalBytes"], abs=len(everything))


def _repo_pk(db: Database, repo_id: str) -> int:
    owner, name = repo_id.split("/")
    with db.read() as session:
        return session.scalars(
            select(Repo.id).join(Account, Account.id == Repo.owner_id).where(Account.name == owner, Repo.name == name)
        ).one()


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_publish_bucket_files_to_a_repo_by_xet_hash(
    hub: HubProcess, people: People, tmp_path: Path, unique: str
) -> None:
    """``lfs-files/duplicate`` on a bucket: the claimed sha256 is checked, then a commit names the file by it and the
    repo serves the same bytes, with no upload and no new xorb."""
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique, private=True).bucket_id
    data = os.urandom(700_000)
    alice.batch_bucket_files(bucket, add=[(data, "run/step-1/model.safetensors")])
    xet_hash = next(iter(alice.get_bucket_paths_info(bucket, ["run/step-1/model.safetensors"]))).xet_hash
    repo = f"alice/{unique}"
    alice.create_repo(repo)
    sha256 = hashlib.sha256(data).hexdigest()
    url = f"{hub.url}/api/buckets/{bucket}/lfs-files/duplicate"

    def duplicate(token: str, claimed: str) -> httpx.Response:
        files = [{"xetHash": xet_hash, "sha256": claimed, "filename": "run/step-1/model.safetensors"}]
        body = {"target": {"type": "model", "name": repo}, "files": files}
        return httpx.post(url, json=body, headers=_auth(token), timeout=120)

    lie = duplicate(people.alice, "0" * 64)
    assert lie.status_code == 200 and lie.json()["failed"][0]["sha256"] == "0" * 64
    assert duplicate(people.bob, sha256).status_code == 404  # bob cannot see the bucket
    xorbs = _count(hub, Xorb)
    assert duplicate(people.alice, sha256).json() == {"failed": []}
    lines = [
        {"key": "header", "value": {"summary": "publish step 1"}},
        {"key": "lfsFile", "value": {"path": "model.safetensors", "algo": "sha256", "oid": sha256, "size": len(data)}},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    headers = {**_auth(people.alice), "content-type": "application/x-ndjson"}
    r = httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content=body, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    assert _count(hub, Xorb) == xorbs
    local = alice.hf_hub_download(repo, "model.safetensors", cache_dir=tmp_path / "cache")
    assert Path(local).read_bytes() == data
    (entry,) = alice.get_paths_info(repo, ["model.safetensors"])
    assert entry.xet_hash == xet_hash

    # a bucket is raw storage (nothing scanned there), but what reaches a repo passes the repo's scan gate
    alice.batch_bucket_files(bucket, add=[(MALICIOUS, "run/evil.bin")])
    xet_hash = next(iter(alice.get_bucket_paths_info(bucket, ["run/evil.bin"]))).xet_hash
    evil = hashlib.sha256(MALICIOUS).hexdigest()
    files = [{"xetHash": xet_hash, "sha256": evil, "filename": "run/evil.bin"}]
    r = httpx.post(url, json={"target": {"type": "model", "name": repo}, "files": files}, headers=_auth(people.alice))
    assert r.json() == {"failed": []}
    lines[1]["value"] = {"path": "evil.bin", "algo": "sha256", "oid": evil, "size": len(MALICIOUS)}
    body = "\n".join(json.dumps(line) for line in lines).encode()
    r = httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content=body, headers=headers, timeout=120)
    assert (r.status_code, r.headers["x-error-code"]) == (400, "UnsafeFile"), r.text


def test_a_batch_becomes_visible_whole_and_at_once(hub: HubProcess, people: People, unique: str) -> None:
    """Readers see each overwrite whole: a file's bytes are one version's, and the files of one batch are all of the
    same batch, never a mix."""
    alice = _api(hub, people.alice)
    bucket = alice.create_bucket(unique).bucket_id
    versions = [(os.urandom(100_000), os.urandom(50_000)) for _ in range(2)]
    hashes = []
    for k, (weights, optimizer) in enumerate(versions):  # both versions kept aside, the first one current
        alice.batch_bucket_files(bucket, add=[(weights, f"v{k}/model.bin"), (optimizer, f"v{k}/optim.bin")])
        info = {f.path: f.xet_hash for f in alice.list_bucket_tree(bucket, prefix=f"v{k}", recursive=True)}
        hashes.append((info[f"v{k}/model.bin"], info[f"v{k}/optim.bin"]))
    alice.batch_bucket_files(
        bucket, copy=[("bucket", bucket, hashes[0][0], "model.bin"), ("bucket", bucket, hashes[0][1], "optim.bin")]
    )
    done = threading.Event()
    seen: list[tuple[str, str]] = []
    bodies: list[bytes] = []
    errors: list[Exception] = []

    def write() -> None:
        try:
            for k in range(1, 9):
                model, optim = hashes[k % 2]
                alice.batch_bucket_files(
                    bucket, copy=[("bucket", bucket, model, "model.bin"), ("bucket", bucket, optim, "optim.bin")]
                )
        except Exception as e:
            errors.append(e)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    url = f"{hub.url}/buckets/{bucket}/resolve/model.bin"
    while not done.is_set() or len(seen) < 3:
        info = {f.path: f.xet_hash for f in alice.get_bucket_paths_info(bucket, ["model.bin", "optim.bin"])}
        seen.append((info["model.bin"], info["optim.bin"]))
        bodies.append(httpx.get(url, headers=_auth(people.alice), timeout=60).content)
    writer.join()
    assert not errors
    assert set(seen) <= set(hashes)
    assert {body for body in bodies} <= {weights for weights, _ in versions}


PATHS = ["a.txt", "a/b.txt", "a/b/c", "a/b/d/e", "a/b0", "a/c/x", "a0", "b/x", "b/y/z", "ab/c"]


@pytest.mark.parametrize("limit", [1, 2, 3, 1000])
def test_listing_pages_end_to_end_whatever_the_page_size(database: Database, limit: int) -> None:
    """Listings paged by cursor give, page after page, exactly the whole listing (files in path order, a folder once
    where its first file would be)."""
    with database.write() as session:
        owner = Account(name="owner", kind="user")
        session.add(owner)
        session.add(XetFile(hash="f" * 64, size=1, num_terms=0))
        session.flush()
        bucket = Bucket(owner_id=owner.id, name="b")
        session.add(bucket)
        session.flush()
        pk = bucket.id
        for path in PATHS:
            session.add(models.BucketFile(bucket_id=pk, path=path, xet_hash="f" * 64, size=1, mtime=0))

    def pages(prefix: str, recursive: bool) -> list[str]:
        listed: list[str] = []
        cursor: str | None = None
        with database.read() as session:
            while True:
                page, cursor = list_tree(session, pk, prefix=prefix, recursive=recursive, cursor=cursor, limit=limit)
                listed += [e if isinstance(e, str) else f"{e.path}*" for e in page]
                if cursor is None:
                    return listed

    assert pages("", recursive=True) == [f"{p}*" for p in sorted(PATHS)]
    assert pages("", recursive=False) == ["a.txt*", "a", "a0*", "ab", "b"]  # "." sorts before "/"
    assert pages("a", recursive=False) == ["a.txt*", "a/b.txt*", "a/b", "a/b0*", "a/c", "a0*", "ab/c*"]
    assert pages("a/", recursive=False) == ["a/b.txt*", "a/b", "a/b0*", "a/c"]
    assert pages("a/b", recursive=True) == ["a/b.txt*", "a/b/c*", "a/b/d/e*", "a/b0*"]
    assert pages("a/b/", recursive=False) == ["a/b/c*", "a/b/d"]
    assert pages("zzz", recursive=False) == []


def test_the_bucket_page_lists_folders_and_files(hub: HubProcess, people: People, unique: str) -> None:
    alice = _api(hub, people.alice)
    url = alice.create_bucket(unique, private=True).url  # what create_bucket answers is a page
    alice.batch_bucket_files(url.rsplit("/buckets/", 1)[1], add=[(b"1", "LATEST"), (b"weights", "step-1/model.bin")])
    top = httpx.get(url, headers=_auth(people.alice), timeout=60)
    assert top.status_code == 200 and "text/html" in top.headers["content-type"]
    assert "LATEST" in top.text and f"/buckets/alice/{unique}/tree/step-1" in top.text and "private" in top.text
    folder = httpx.get(f"{url}/tree/step-1", headers=_auth(people.alice), timeout=60)
    assert f"/buckets/alice/{unique}/resolve/step-1/model.bin" in folder.text
    assert httpx.get(url, timeout=60).status_code == 404  # private: as if absent
