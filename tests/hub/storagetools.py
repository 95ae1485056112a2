"""Helpers of the storage engine's tests (gc, fsck, accounting): Xet uploads through the CAS routes, the hub's own
database and store, and ageing what is stored so that a grace period has passed without waiting for it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
from huggingface_hub import HfApi
from sqlalchemy import select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Blob, Commit, LfsPart, XetFile, XetSha256, Xorb
from openckpt.hub.services.lfs.transfers import sign
from openckpt.store.local import LocalBlobStore
from openckpt.xet.chunking import chunk_boundaries
from openckpt.xet.hashes import chunk_hash, file_hash, hash_to_hex, verification_hash, xorb_hash
from openckpt.xet.shard import FileTerm, Shard, XorbInfo, serialize_shard
from openckpt.xet.shard import XetFile as ShardFile
from openckpt.xet.xorb import build_xorb
from tests import zygote
from tests.hubtools import HubProcess, free_port, wait_for


class XetUpload:
    """A file as one xorb of its chunks and the shard that registers it under its sha256."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        cuts = chunk_boundaries(data)
        chunks = [data[a:b] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]
        self.leaves = [(chunk_hash(c), len(c)) for c in chunks]
        self.xorb = build_xorb(chunks)
        self.xorb_hex = hash_to_hex(xorb_hash(self.leaves))
        self.file_hex = hash_to_hex(file_hash(self.leaves))
        self.sha256 = hashlib.sha256(data).hexdigest()

    def shard(self) -> bytes:
        term = FileTerm(xorb_hash(self.leaves), 0, len(self.leaves), len(self.data),
                        verification_hash([h for h, _ in self.leaves]))  # fmt: skip
        offsets = [sum(s for _, s in self.leaves[:i]) for i in range(len(self.leaves))]
        info = XorbInfo(
            xorb_hash(self.leaves), tuple((h, o, s) for (h, s), o in zip(self.leaves, offsets, strict=True))
        )
        entry = ShardFile(file_hash(self.leaves), (term,), bytes.fromhex(self.sha256))
        return serialize_shard(Shard((entry,), (info,)), footer=False)


def api(hub: HubProcess, token: str | None = None) -> HfApi:
    return HfApi(endpoint=hub.url, token=token or hub.token)


def put_xet(hub: HubProcess, repo: str, up: XetUpload, token: str | None = None) -> None:
    """Upload the xorb and the shard of ``up`` with a write token of ``repo`` (registered, not committed)."""
    r = httpx.get(f"{hub.url}/api/models/{repo}/xet-write-token/main",
                  headers={"authorization": f"Bearer {token or hub.token}"})  # fmt: skip
    assert r.status_code == 200, r.text
    cas, headers = r.json()["casUrl"], {"authorization": f"Bearer {r.json()['accessToken']}"}
    assert httpx.post(f"{cas}/v1/xorbs/default/{up.xorb_hex}", content=up.xorb, headers=headers).is_success
    assert httpx.post(f"{cas}/v1/shards", content=up.shard(), headers=headers).is_success


def commit_xet(hub: HubProcess, repo: str, up: XetUpload, path: str, token: str | None = None) -> None:
    """Upload ``up`` by Xet and commit it at ``path`` on main."""
    put_xet(hub, repo, up, token)
    commit_lfs(hub, repo, path, up.sha256, len(up.data), token)


def commit_lfs(hub: HubProcess, repo: str, path: str, sha256: str, size: int, token: str | None = None) -> None:
    """Commit the stored LFS object ``sha256`` of ``size`` bytes at ``path`` on main."""
    body = (b'{"key":"header","value":{"summary":"add"}}\n'
            b'{"key":"lfsFile","value":{"path":"%s","algo":"sha256","oid":"%s","size":%d}}\n'
            % (path.encode(), sha256.encode(), size))  # fmt: skip
    headers = {"authorization": f"Bearer {token or hub.token}", "content-type": "application/x-ndjson"}
    r = httpx.post(f"{hub.url}/api/models/{repo}/commit/main", content=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text


@contextmanager
def database(hub: HubProcess) -> Iterator[Database]:
    db = Database(hub.database_url)
    try:
        yield db
    finally:
        db.dispose()


def store_of(hub: HubProcess) -> LocalBlobStore:
    return LocalBlobStore(hub.data_dir / "store")


def age_everything(hub: HubProcess, by: timedelta) -> None:
    """Make every row and store object of the hub ``by`` older, as if that time had passed."""
    with database(hub) as db, db.write() as session:
        for model in (Blob, Xorb, XetFile, XetSha256, Commit, LfsPart):
            for row in session.scalars(select(model)):
                row.created_at -= by
    for path in (hub.data_dir / "store").rglob("*"):
        if path.is_file():
            st = path.stat()
            os.utime(path, (st.st_atime - by.total_seconds(), st.st_mtime - by.total_seconds()))
    for path in (hub.data_dir / "multipart").rglob("*") if (hub.data_dir / "multipart").exists() else ():
        st = path.stat()
        os.utime(path, (st.st_atime - by.total_seconds(), st.st_mtime - by.total_seconds()))


def put_part(hub: HubProcess, sha256: str, size: int, number: int, data: bytes) -> str:
    """Upload part ``number`` of the LFS multipart upload of ``sha256`` through a URL signed as the batch API signs
    them (whatever the hub's multipart threshold); return its ETag."""
    url = hub.url + sign(hub.secret(), "PUT", f"/api/lfs/part/{sha256}/{size}/{number}", 600)
    r = httpx.put(url, content=data, timeout=60)
    assert r.status_code == 200, r.text
    return r.headers["etag"].strip('"')


def complete_parts(hub: HubProcess, sha256: str, size: int, etags: list[str]) -> httpx.Response:
    """Ask the hub to join parts 1..N of the LFS multipart upload of ``sha256``."""
    url = hub.url + sign(hub.secret(), "POST", f"/api/lfs/complete/{sha256}/{size}", 600)
    parts = [{"partNumber": n, "etag": etag} for n, etag in enumerate(etags, 1)]
    return httpx.post(url, json={"oid": sha256, "parts": parts}, timeout=60)


def write_orphan(hub: HubProcess, data: bytes, *, age: timedelta = timedelta(0)) -> str:
    """Put ``data`` in the store with no row naming it (a server killed between storing and recording it)."""
    store = store_of(hub)
    writer = store.writer(len(data))
    writer.write(data)
    sha256 = writer.commit()
    path = store.path_of(sha256)
    then = time.time() - age.total_seconds()
    os.utime(path, (then, then))
    return sha256


def restart_hub(old: HubProcess) -> HubProcess:
    """Start a new server process on ``old``'s data dir and database (after ``old`` was killed); same admin token.

    (``start_hub`` waits for the first-start admin token line, which a restart never prints.)"""
    port = free_port()
    log = old.data_dir.parent / f"hub-{port}.log"
    cmd = [sys.executable, "-m", "openckpt.hub", "--data-dir", str(old.data_dir), "--port", str(port),
           "--host", "127.0.0.1", "--workers", "1", "--database-url", old.database_url]  # fmt: skip
    with open(log, "wb") as out:
        process = zygote.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/api/models", timeout=90)
    except TimeoutError:
        process.kill()
        raise
    return HubProcess(url, old.data_dir, old.database_url, old.token, process, log)
