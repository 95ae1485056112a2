"""Downloads as the clients make them: ``/resolve`` headers, Range requests, downloads cut off and resumed (the
current client resumes after a network error, 0.36 from a ``.incomplete`` file in its cache), odd file names, and
server-side copies."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, HfApi, constants, hf_hub_download

from tests.hub.conftest import Client
from tests.hub.test_xet_reads import ingesting_hub, wait_for_xet  # noqa: F401 - overrides hub: ingestion on
from tests.hubtools import HubProcess
from tests.testdata import opaque_bytes

SIZE = 4 * 2**20 + 321


@pytest.fixture(scope="module")
def blob_repo(hub: HubProcess) -> tuple[str, bytes]:
    """A public repo holding ``blob.bin`` (LFS, a few MB of random bytes) and ``small.txt``."""
    data = opaque_bytes(SIZE)
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = api.create_repo("admin/downloads").repo_id
    api.create_commit(repo, [CommitOperationAdd("blob.bin", data), CommitOperationAdd("small.txt", b"small")],
                      commit_message="add")  # fmt: skip
    return repo, data


def test_resolve_headers_and_ranges(hub: HubProcess, blob_repo: tuple[str, bytes]) -> None:
    repo, data = blob_repo
    url = f"{hub.url}/{repo}/resolve/main/blob.bin"
    head = httpx.head(url, headers={"accept-encoding": "identity"})
    assert head.status_code == 200
    assert len(head.headers["x-repo-commit"]) == 40
    assert head.headers["etag"] == head.headers["x-linked-etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert int(head.headers["x-linked-size"]) == int(head.headers["content-length"]) == SIZE
    assert len(wait_for_xet(url)["x-xet-hash"]) == 64, "uploaded by LFS, then ingested into xorbs in the background"
    assert httpx.get(url).content == data, "plain GETs are served by reconstruction from the xorbs"

    tail = httpx.get(url, headers={"range": "bytes=1000-"})
    assert tail.status_code == 206 and tail.headers["content-range"] == f"bytes 1000-{SIZE - 1}/{SIZE}"
    assert tail.content == data[1000:]
    middle = httpx.get(url, headers={"range": "bytes=10-19"})
    assert middle.status_code == 206 and middle.content == data[10:20]
    assert middle.headers["content-range"] == f"bytes 10-19/{SIZE}"
    beyond = httpx.get(url, headers={"range": f"bytes={SIZE}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{SIZE}"

    small = httpx.head(f"{hub.url}/{repo}/resolve/main/small.txt")
    assert small.headers["etag"] == '"' + hashlib.sha1(b"blob 5\0small", usedforsecurity=False).hexdigest() + '"'
    gone = httpx.head(f"{hub.url}/{repo}/resolve/main/nothing.txt")
    assert (gone.status_code, gone.headers["x-error-code"]) == (404, "EntryNotFound")
    assert gone.headers["x-repo-commit"] == head.headers["x-repo-commit"], "the client caches the absence by commit"


class CuttingProxy:
    """A TCP proxy to the hub that drops the connection once, ``cut_after`` bytes into the answer to the first GET
    of a ``/resolve/`` URL, and records the Range header of every GET."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port, self.cut_after = upstream_port, cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        self.ranges: list[str | None] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            armed = threading.Event()
            threading.Thread(target=self._requests, args=(downstream, upstream, armed), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, downstream, armed), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket, armed: threading.Event) -> None:
        while data := self._recv(src):
            if data.startswith(b"GET ") and b"/resolve/" in data.split(b"\r\n", 1)[0]:
                headers = dict(line.split(b": ", 1) for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:])
                found = {k.lower(): v for k, v in headers.items()}.get(b"range")
                self.ranges.append(found.decode() if found else None)
                if not self.cut.is_set():
                    armed.set()
            dst.sendall(data)

    def _answers(self, src: socket.socket, dst: socket.socket, armed: threading.Event) -> None:
        sent = 0
        while data := self._recv(src):
            if armed.is_set() and not self.cut.is_set():
                if sent + len(data) >= self.cut_after:
                    dst.sendall(data[: self.cut_after - sent])
                    self.cut.set()
                    for s in (dst, src):  # shutdown first: it wakes the thread blocked reading the same socket
                        s.shutdown(socket.SHUT_RDWR)
                        s.close()
                    return
                sent += len(data)
            dst.sendall(data)

    @staticmethod
    def _recv(s: socket.socket) -> bytes:
        try:
            return s.recv(1 << 16)
        except OSError:
            return b""

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(hub: HubProcess) -> Iterator[CuttingProxy]:
    server = CuttingProxy(int(hub.url.rsplit(":", 1)[1]), cut_after=2 * 2**20 + 12345)
    yield server
    server.close()


def test_current_client_resumes_a_cut_download(
    proxy: CuttingProxy, blob_repo: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops in the middle of the body: the client asks for the rest with ``Range: bytes=N-``."""
    repo, data = blob_repo
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 2**20)  # what it wrote before the cut is what it keeps
    local = hf_hub_download(repo, "blob.bin", endpoint=proxy.url, token=False, cache_dir=tmp_path)
    assert proxy.cut.is_set(), "the download was never cut"
    assert proxy.ranges == [None, "bytes=2097152-"], proxy.ranges
    assert Path(local).read_bytes() == data


def test_old_client_resumes_from_incomplete_file(
    hub: HubProcess, old_client: Client, blob_repo: tuple[str, bytes], tmp_path: Path
) -> None:
    repo, data = blob_repo
    have = 3 * 2**20
    got = old_client.run("resume_incomplete", endpoint=hub.url, work=tmp_path, token=hub.token, repo_id=repo,
                         path="blob.bin", have=have)  # fmt: skip
    assert got["size"] == SIZE and got["head"], "the bytes it had were kept: it resumed instead of restarting"
    assert got["tail"] == hashlib.sha256(data[have:]).hexdigest()


NAMES = ["a b/c d.txt", "ü.txt", "日本/語.txt", "100%.txt", "h#sh.txt", "q?.txt", "plus+.txt", "semi;colon.txt",
         'quo"te.txt', "dots...txt", "-dash.txt"]  # fmt: skip


def test_odd_file_names(hub: HubProcess, unique: str, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = api.create_repo(f"admin/{unique}").repo_id
    api.create_commit(repo, [CommitOperationAdd(n, n.encode()) for n in NAMES], commit_message="odd names")
    assert sorted(api.list_repo_files(repo)) == sorted([".gitattributes", *NAMES])
    assert sorted(e.path for e in api.get_paths_info(repo, NAMES)) == sorted(NAMES)
    assert [e.path for e in api.list_repo_tree(repo, path_in_repo="日本")] == ["日本/語.txt"]
    for name in NAMES:
        local = hf_hub_download(repo, name, endpoint=hub.url, token=hub.token, cache_dir=tmp_path)
        assert Path(local).read_text() == name


def test_copies(hub: HubProcess, unique: str) -> None:
    """``CommitOperationCopy``: an LFS copy names the stored object without its size; a regular one re-uploads."""
    api = HfApi(endpoint=hub.url, token=hub.token)
    repo = api.create_repo(f"admin/{unique}").repo_id
    api.create_commit(repo, [CommitOperationAdd("w.safetensors", b"\0" * 300), CommitOperationAdd("r.txt", b"r")],
                      commit_message="add")  # fmt: skip
    api.create_commit(repo, [CommitOperationCopy("w.safetensors", "copy/w.safetensors"),
                             CommitOperationCopy("r.txt", "copy/r.txt")], commit_message="copy")  # fmt: skip
    info = {e.path: e for e in api.get_paths_info(repo, ["w.safetensors", "copy/w.safetensors", "copy/r.txt"])}
    original, copy = info["w.safetensors"], info["copy/w.safetensors"]
    assert copy.lfs is not None and original.lfs is not None
    assert (copy.size, copy.lfs.sha256, copy.blob_id) == (original.size, original.lfs.sha256, original.blob_id) == (
        300, hashlib.sha256(b"\0" * 300).hexdigest(), original.blob_id)  # fmt: skip
    assert info["copy/r.txt"].size == 1
