"""The stock client with ``hf_xet`` (no ``HF_HUB_DISABLE_XET``) against the hub: uploads and downloads go through
the CAS, new versions send and store only what changed, a re-upload with an empty client cache deduplicates
globally, transformers round-trips; clients without Xet (``HF_HUB_DISABLE_XET=1``, the 0.36 release) read the same
repos through ``/resolve``. Every client runs in a process of its own, through a proxy that records its requests."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Xorb
from tests import zygote
from tests.hub.conftest import CLIENTS, Client, client_env, run_checked
from tests.hub.test_gate import MALICIOUS
from tests.hubtools import HubProcess
from tests.proxy import RecordingProxy
from tests.testdata import opaque_bytes

CLIENT = r"""
import hashlib, json, sys
from pathlib import Path
import huggingface_hub
from huggingface_hub import HfApi, hf_hub_download, snapshot_download

def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

def upload(endpoint, token, repo, folder, message, repo_type="model"):
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo, exist_ok=True, repo_type=repo_type)
    return {"commit": api.upload_folder(repo_id=repo, folder_path=folder, commit_message=message,
                                        repo_type=repo_type).oid}

def download(endpoint, token, repo, paths, cache, snapshot=True, repo_type="model"):
    one = {p: digest(hf_hub_download(repo, p, endpoint=endpoint, token=token, cache_dir=cache + "/one",
                                     repo_type=repo_type)) for p in paths}
    if not snapshot:
        return {"one": one}
    root = Path(snapshot_download(repo, endpoint=endpoint, token=token, cache_dir=cache + "/snapshot",
                                  repo_type=repo_type))
    every = {str(p.relative_to(root)): digest(p) for p in root.rglob("*") if p.is_file()}
    return {"one": one, "snapshot": every}

step, kwargs = sys.argv[1], json.loads(sys.argv[2])
result = {"upload": upload, "download": download}[step](**kwargs)
print(json.dumps({**result, "version": huggingface_hub.__version__}))
"""


@pytest.fixture(scope="module")
def proxy(hub: HubProcess) -> Iterator[RecordingProxy]:
    p = RecordingProxy(hub.url)
    yield p
    p.close()


def xet_env(endpoint: str, home: Path, token: str, *, xet: bool = True) -> dict[str, str]:
    """A client environment with hf_xet enabled (unless not ``xet``): own HF_HOME and Xet cache, telemetry off."""
    env = client_env(endpoint, home, HF_TOKEN=token, HF_XET_CACHE=str(home / "xet-cache"))
    if xet:
        del env["HF_HUB_DISABLE_XET"]
    return env


def run_client(step: str, env: dict[str, str], python: str = sys.executable, **kwargs: Any) -> dict[str, Any]:
    out = run_checked([python, "-c", CLIENT, step, json.dumps(kwargs)], env=env, timeout=900)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def stored_xorb_bytes(hub: HubProcess) -> int:
    db = Database(hub.database_url)
    try:
        with db.read() as session:
            return int(session.scalar(select(func.coalesce(func.sum(Xorb.serialized_size), 0))) or 0)
    finally:
        db.dispose()


def write_folder(root: Path, files: dict[str, bytes]) -> dict[str, str]:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


def test_upload_and_download_through_xet(
    hub: HubProcess, proxy: RecordingProxy, old_client: Client, unique: str, tmp_path: Path
) -> None:
    files = {
        "tiny.bin": b"\x00tiny",  # a few bytes, LFS by its suffix: through Xet
        "empty.bin": b"",  # empty files are regular
        "notes.txt": b"just text\n",
        "weights.safetensors": opaque_bytes(1_500_000),
        "sub/big.bin": opaque_bytes(24_000_000),
    }
    digests = write_folder(tmp_path / "src", files)
    repo = f"admin/{unique}"
    proxy.reset()
    run_client("upload", xet_env(proxy.url, tmp_path / "up", hub.token), endpoint=proxy.url, token=hub.token,
               repo=repo, folder=str(tmp_path / "src"), message="through xet")  # fmt: skip
    assert proxy.seen("POST", "/cas/v1/xorbs/default/") >= 1 and proxy.seen("POST", "/cas/v1/shards") >= 1
    assert proxy.seen("PUT", "/api/lfs/") == 0 and proxy.seen("POST", f"/{repo}.git/info/lfs") == 0

    listing = {i["path"]: i for i in httpx.get(f"{hub.url}/api/models/{repo}/tree/main?recursive=1").json()}
    for path in ("tiny.bin", "weights.safetensors", "sub/big.bin"):
        assert re.fullmatch("[0-9a-f]{64}", listing[path]["xetHash"]), path
    assert "xetHash" not in listing["notes.txt"] and "xetHash" not in listing["empty.bin"]

    proxy.reset()
    got = run_client("download", xet_env(proxy.url, tmp_path / "down", hub.token), endpoint=proxy.url,
                     token=hub.token, repo=repo, paths=list(files), cache=str(tmp_path / "down-cache"))  # fmt: skip
    assert got["one"] == digests
    assert {p: d for p, d in got["snapshot"].items() if p != ".gitattributes"} == digests
    assert proxy.seen("GET", "/cas/v1/reconstructions/") >= 1 and proxy.seen("GET", "/cas/transfer/") >= 1
    assert proxy.seen("GET", f"/{repo}/resolve/main/sub/big.bin") == 0, "hf_xet, not /resolve, fetched the bytes"

    for name, python in (("no-xet", sys.executable), ("0.36", str(old_client.python))):
        proxy.reset()
        env = xet_env(proxy.url, tmp_path / name, hub.token, xet=False)
        got = run_client("download", env, python, endpoint=proxy.url, token=hub.token, repo=repo, paths=list(files),
                         cache=str(tmp_path / f"{name}-cache"))  # fmt: skip
        assert got["one"] == digests, name
        assert proxy.seen("GET", "/cas/") == 0, f"{name} must read through /resolve"
    big = files["sub/big.bin"]
    tail = httpx.get(f"{hub.url}/{repo}/resolve/main/sub/big.bin", headers={"range": "bytes=23000000-"})
    assert tail.status_code == 206 and tail.content == big[23_000_000:]


def test_dataset_through_xet(hub: HubProcess, proxy: RecordingProxy, unique: str, tmp_path: Path) -> None:
    digests = write_folder(tmp_path / "src", {"data/train.parquet": opaque_bytes(700_000)})
    repo = f"admin/{unique}"
    proxy.reset()
    run_client("upload", xet_env(proxy.url, tmp_path / "up", hub.token), endpoint=proxy.url, token=hub.token,
               repo=repo, folder=str(tmp_path / "src"), message="data", repo_type="dataset")  # fmt: skip
    assert proxy.seen("POST", "/cas/v1/shards") == 1
    head = httpx.head(f"{hub.url}/datasets/{repo}/resolve/main/data/train.parquet")
    assert f"/api/datasets/{repo}/xet-read-token/" in head.headers["link"]
    proxy.reset()
    reader = xet_env(proxy.url, tmp_path / "down", hub.token)
    got = run_client("download", reader, endpoint=proxy.url, token=hub.token, repo=repo, paths=list(digests),
                     cache=str(tmp_path / "c"), repo_type="dataset")  # fmt: skip
    assert got["one"] == digests and got["snapshot"]["data/train.parquet"] == digests["data/train.parquet"]
    assert proxy.seen("GET", "/cas/v1/reconstructions/") >= 1


def test_the_gate_scans_what_xet_uploads(hub: HubProcess, proxy: RecordingProxy, unique: str, tmp_path: Path) -> None:
    """A Xet file is verified and copied for the scanner in one pass: a malicious one is refused, nothing is visible."""
    repo = f"admin/{unique}"
    write_folder(tmp_path / "src", {"model.bin": MALICIOUS + opaque_bytes(300_000), "ok.safetensors": opaque_bytes(9)})
    proxy.reset()
    cmd = [sys.executable, "-c", CLIENT, "upload", json.dumps({"endpoint": proxy.url, "token": hub.token,
           "repo": repo, "folder": str(tmp_path / "src"), "message": "evil"})]  # fmt: skip
    done = zygote.run(cmd, env=xet_env(proxy.url, tmp_path / "up", hub.token), capture_output=True, text=True)
    assert done.returncode != 0 and "model.bin" in done.stderr and "malicious" in done.stderr
    assert proxy.seen("POST", "/cas/v1/shards") >= 1, "the bytes went through Xet"
    files = httpx.get(f"{hub.url}/api/models/{repo}/tree/main", headers={"authorization": f"Bearer {hub.token}"})
    assert [f["path"] for f in files.json()] == [".gitattributes"]


def test_a_download_cut_off_midway_completes(hub: HubProcess, proxy: RecordingProxy, unique: str,
                                             tmp_path: Path) -> None:  # fmt: skip
    data = opaque_bytes(6_000_000)
    digests = write_folder(tmp_path / "src", {"w.bin": data})
    repo = f"admin/{unique}"
    run_client("upload", xet_env(proxy.url, tmp_path / "up", hub.token), endpoint=proxy.url, token=hub.token,
               repo=repo, folder=str(tmp_path / "src"), message="w")  # fmt: skip
    proxy.reset()
    proxy.cut("/cas/transfer/", 1_000_000)
    reader = xet_env(proxy.url, tmp_path / "down", hub.token)
    got = run_client("download", reader, endpoint=proxy.url, token=hub.token, repo=repo, paths=["w.bin"],
                     cache=str(tmp_path / "c"), snapshot=False)  # fmt: skip
    assert proxy.cuts == 1, "the first transfer was cut off"
    assert proxy.seen("GET", "/cas/transfer/") >= 2, "and fetched again"
    assert got["one"] == digests


def _checkpoint(tensors: list[bytes]) -> bytes:
    """A safetensors file of uint8 tensors."""
    header, offset = {}, 0
    for i, t in enumerate(tensors):
        header[f"t{i}"] = {"dtype": "U8", "shape": [len(t)], "data_offsets": [offset, offset + len(t)]}
        offset += len(t)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + b"".join(tensors)


def test_new_version_sends_and_stores_only_what_changed(
    hub: HubProcess, proxy: RecordingProxy, unique: str, tmp_path: Path
) -> None:
    tensors = [opaque_bytes(2_000_000) for _ in range(8)]
    v1 = _checkpoint(tensors)
    tensors[5] = opaque_bytes(2_000_000)
    v2 = _checkpoint(tensors)
    repo = f"admin/{unique}"
    env = xet_env(proxy.url, tmp_path / "client", hub.token)
    write_folder(tmp_path / "v1", {"model.safetensors": v1})
    write_folder(tmp_path / "v2", {"model.safetensors": v2})

    base = stored_xorb_bytes(hub)
    run_client("upload", env, endpoint=proxy.url, token=hub.token, repo=repo, folder=str(tmp_path / "v1"), message="v1")
    first = stored_xorb_bytes(hub) - base
    assert len(v1) * 0.95 < first < len(v1) * 1.05
    proxy.reset()
    run_client("upload", env, endpoint=proxy.url, token=hub.token, repo=repo, folder=str(tmp_path / "v2"), message="v2")
    second = stored_xorb_bytes(hub) - base - first
    assert second < len(v2) / 4, f"one tensor of eight changed, yet {second} of {len(v2)} bytes were stored"
    assert proxy.sent < len(v2) / 4, f"one tensor of eight changed, yet the client sent {proxy.sent} bytes"

    # the same bytes from a client whose cache is empty, to another repo: global dedup finds every chunk
    before = stored_xorb_bytes(hub)
    proxy.reset()
    fresh = xet_env(proxy.url, tmp_path / "fresh", hub.token)
    run_client("upload", fresh, endpoint=proxy.url, token=hub.token, repo=f"{repo}-copy", folder=str(tmp_path / "v2"),
               message="copy")  # fmt: skip
    assert proxy.seen("GET", "/cas/v1/chunks/default/") >= 1
    assert stored_xorb_bytes(hub) - before < len(v2) / 100
    assert proxy.sent < len(v2) / 20

    reader = xet_env(proxy.url, tmp_path / "reader", hub.token)
    got = run_client("download", reader, endpoint=proxy.url, token=hub.token, repo=f"{repo}-copy",
                     paths=["model.safetensors"], cache=str(tmp_path / "c"))  # fmt: skip
    assert got["one"] == {"model.safetensors": hashlib.sha256(v2).hexdigest()}
    old = httpx.get(f"{hub.url}/{repo}/resolve/{_first_commit(hub, repo)}/model.safetensors")
    assert old.status_code == 200 and old.content == v1


def _first_commit(hub: HubProcess, repo: str) -> str:
    commits = httpx.get(f"{hub.url}/api/models/{repo}/commits/main").json()
    return str(commits[-2]["id"])  # the oldest is the repo's initial commit


def test_transformers_push_to_hub_and_from_pretrained_through_xet(
    hub: HubProcess, proxy: RecordingProxy, unique: str, tmp_path: Path
) -> None:
    pytest.importorskip("transformers")
    script = str(CLIENTS / "transformers_roundtrip.py")
    repo = f"admin/{unique}"
    proxy.reset()
    pushed = run_checked([sys.executable, script, "push", repo, str(tmp_path)],
                         env=xet_env(proxy.url, tmp_path / "push-home", hub.token))  # fmt: skip
    assert f"/{repo}/commit/" in pushed
    assert proxy.seen("POST", "/cas/v1/shards") >= 1
    proxy.reset()
    loaded = run_checked([sys.executable, script, "load", repo, str(tmp_path)],
                         env=xet_env(proxy.url, tmp_path / "load-home", hub.token))  # fmt: skip
    assert loaded.strip().splitlines()[-1].startswith("identical ")
    assert proxy.seen("GET", "/cas/v1/reconstructions/") >= 1


def test_a_file_of_200_mb(hub: HubProcess, proxy: RecordingProxy, unique: str, tmp_path: Path) -> None:
    """One large upload and download through Xet (several xorbs), on SQLite only: the size is what is tested."""
    if "postgresql" in hub.database_url:
        pytest.skip("the large file is tested once, on SQLite")
    size = 200 * 2**20 + 12345
    data = opaque_bytes(size)
    digests = write_folder(tmp_path / "src", {"large.bin": data})
    tail = data[-1_000_000:]
    del data
    repo = f"admin/{unique}"
    env = xet_env(proxy.url, tmp_path / "client", hub.token)
    run_client("upload", env, endpoint=proxy.url, token=hub.token, repo=repo, folder=str(tmp_path / "src"),
               message="large")  # fmt: skip
    (tmp_path / "src" / "large.bin").unlink()
    proxy.reset()
    reader = xet_env(proxy.url, tmp_path / "reader", hub.token)
    got = run_client("download", reader, endpoint=proxy.url, token=hub.token, repo=repo, paths=["large.bin"],
                     cache=str(tmp_path / "cache"), snapshot=False)  # fmt: skip
    assert got["one"] == digests
    assert proxy.seen("GET", "/cas/v1/reconstructions/") >= 1
    plain = httpx.get(f"{hub.url}/{repo}/resolve/main/large.bin", headers={"range": f"bytes={size - len(tail)}-"})
    assert plain.status_code == 206 and plain.content == tail
