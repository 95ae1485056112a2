"""Issue #12, bounds and headers, replayed against a live hub (SQLite and PostgreSQL): every request that used to eat a
worker, crash a route or drop the connection gets a clean 4xx in the Hub's error shape, and the worker serves on.

One LFS batch object of 2**70 bytes, ``[`` x 100,000 as a JSON body, a 60 MB body, huge or countless headers, a body
that stops mid-way, control characters in a path; and ``nosniff`` on the files the hub serves.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h11
import httpx
import pytest

from openckpt.hub.services.lfs.transfers import sign
from tests.hubtools import HubProcess, Postgres, start_hub

BODY_TIMEOUT = 3
"""Seconds the hub of these tests waits for a pausing body (shortened from the default 60)."""
MB = 2**20
DEEP = b"[" * 100_000


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub process (one worker: its memory is the server's) with a short body timeout."""
    data = tmp_path_factory.mktemp("hub") / "data"
    url = ""
    if request.param == "postgresql":
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.create_database(f"hub_{uuid.uuid4().hex[:8]}")
    server = start_hub(data, url, env={"OPENCKPT_BODY_TIMEOUT": str(BODY_TIMEOUT)})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(hub: HubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers={"authorization": f"Bearer {hub.token}"}, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def repo(http: httpx.Client) -> str:
    """``admin/<name>`` with one file, ``a.txt``."""
    name = f"r{uuid.uuid4().hex[:10]}"
    assert http.post("/api/repos/create", json={"name": name}).status_code == 200
    line = {"key": "file", "value": {"path": "a.txt", "content": base64.b64encode(b"hello").decode()}}
    assert commit(http, f"admin/{name}", json.dumps(line).encode()).status_code == 200
    return f"admin/{name}"


def commit(http: httpx.Client, repo: str, *lines: bytes, raw: bytes | None = None) -> httpx.Response:
    header = json.dumps({"key": "header", "value": {"summary": "test"}}).encode()
    body = raw if raw is not None else b"\n".join((header, *lines))
    return http.post(f"/api/models/{repo}/commit/main", content=body, headers={"content-type": "application/x-ndjson"})


def rss_mb(hub: HubProcess) -> float:
    """The resident memory of the hub's process (its only worker), from ``/proc/<pid>/status``."""
    assert hub.process is not None
    for line in Path(f"/proc/{hub.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def refused(r: httpx.Response | Response, status: int, code: str) -> None:
    """``r`` is a 4xx in the Hub's error shape: JSON ``{"error": ...}`` and ``X-Error-Code``."""
    assert (r.status_code, r.headers.get("x-error-code")) == (status, code), (r.status_code, r.text[:500])
    assert isinstance(json.loads(r.text)["error"], str)
    assert r.headers.get("x-error-message")


@dataclass
class Response:
    """A response read off a raw socket by a strict HTTP/1.1 parser (h11 refuses malformed headers)."""

    status_code: int
    headers: dict[str, str]
    text: str


def raw_exchange(hub: HubProcess, head: bytes, body_pieces: tuple[bytes, ...] = (), *, pause: float = 0) -> Response:
    """Send ``head`` (request line and headers, raw) then ``body_pieces`` ``pause`` seconds apart; read the answer."""
    host, port = hub.url.removeprefix("http://").split(":")
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head)
        for piece in body_pieces:
            time.sleep(pause)
            sock.sendall(piece)
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    return Response(status, headers, body.decode())


def _post_head(path: str, length: int) -> bytes:
    """A JSON POST's request line and headers, but the last CRLF."""
    lines = [f"POST {path} HTTP/1.1", "Host: hub", "Content-Type: application/json", f"Content-Length: {length}", ""]
    return "\r\n".join(lines).encode()


def _auth(hub: HubProcess) -> bytes:
    return f"Authorization: Bearer {hub.token}\r\n".encode()


# -- LFS sizes ------------------------------------------------------------------------------------------------------


def _batch(http: httpx.Client, repo: str, objects: list[dict[str, object]]) -> httpx.Response:
    body = {"operation": "upload", "transfers": ["basic", "multipart"], "objects": objects, "hash_algo": "sha256"}
    return http.post(f"/{repo}.git/info/lfs/objects/batch", json=body)


def test_a_2_70_byte_lfs_object_is_refused_with_flat_memory(hub: HubProcess, http: httpx.Client, repo: str) -> None:
    """The finding: one such object made a worker sign a URL per 512 MiB part (6.2 GB, no answer). Now the object gets
    a 422 of its own, as the LFS spec has it, and the stock client reports its message."""
    from huggingface_hub.lfs import UploadInfo, post_lfs_batch_info

    before = rss_mb(hub)
    oid = hashlib.sha256(b"huge").hexdigest()
    r = _batch(http, repo, [{"oid": oid, "size": 2**70}])
    assert r.status_code == 200, r.text
    (obj,) = r.json()["objects"]
    assert obj["error"]["code"] == 422 and "maximum file size" in obj["error"]["message"]
    assert "actions" not in obj
    info = UploadInfo(sha256=bytes.fromhex(oid), size=2**70, sample=b"")
    auth = {"authorization": f"Bearer {hub.token}"}
    actions, errors, _ = post_lfs_batch_info([info], None, "model", repo, endpoint=hub.url, headers=auth)
    assert actions == [] and errors[0]["error"]["code"] == 422
    # the largest file allowed (5 TB) gets at most 10,000 parts (S3's limit), consistent with its chunk size
    (big,) = _batch(http, repo, [{"oid": oid, "size": 5 * 10**12}]).json()["objects"]
    header = big["actions"]["upload"]["header"]
    parts = [n for n in header if n.isdigit()]
    assert len(parts) <= 10_000 and len(parts) == -(-5 * 10**12 // int(header["chunk_size"]))
    # many of them in one batch: a 413 before anything is signed; so are more objects than a batch may name
    many = [{"oid": hashlib.sha256(b"%d" % i).hexdigest(), "size": 5 * 10**12} for i in range(256)]
    refused(_batch(http, repo, many), 413, "PayloadTooLarge")
    refused(_batch(http, repo, [{"oid": oid, "size": 1}] * 1001), 413, "PayloadTooLarge")
    assert rss_mb(hub) - before < 100, (before, rss_mb(hub))
    assert http.get(f"/api/models/{repo}").status_code == 200


def test_a_size_over_the_maximum_is_refused_in_the_batch_of_a_download(http: httpx.Client, repo: str) -> None:
    body = {"operation": "download", "objects": [{"oid": hashlib.sha256(b"x").hexdigest(), "size": 2**70}]}
    (obj,) = http.post(f"/{repo}.git/info/lfs/objects/batch", json=body).json()["objects"]
    assert obj["error"]["code"] == 422


# -- JSON bodies ----------------------------------------------------------------------------------------------------

JSON_ROUTES = [
    ("POST", "/api/repos/create"),
    ("DELETE", "/api/repos/delete"),
    ("POST", "/api/repos/move"),
    ("POST", "/api/models/{repo}/duplicate"),
    ("PUT", "/api/models/{repo}/settings"),
    ("POST", "/api/models/{repo}/branch/b1"),
    ("POST", "/api/models/{repo}/tag/t1"),
    ("POST", "/api/models/{repo}/preupload/main"),
    ("POST", "/api/models/{repo}/super-squash/main"),
    ("POST", "/api/models/{repo}/lfs-files/batch"),
    ("POST", "/api/models/{repo}/license"),
    ("POST", "/api/models/{repo}/scan/release"),
    ("POST", "/api/models/{repo}/user-access-request/handle"),
    ("POST", "/api/models/{repo}/user-access-request/grant"),
    ("POST", "/api/models/{repo}/user-access-request/request"),
    ("POST", "/{repo}.git/info/lfs/objects/batch"),
    ("POST", "/api/lfs/verify/model/{repo}"),
    ("POST", "{complete}"),
    ("PUT", "/api/organizations/{org}/policy"),
    ("POST", "/api/settings/signing-keys"),
    ("POST", "/api/settings/webhooks"),
    ("POST", "/api/validate-yaml"),
]


@pytest.fixture(scope="module")
def org(hub: HubProcess) -> str:
    name = f"o{uuid.uuid4().hex[:10]}"
    hub.create_org(name, {"admin": "admin"})
    return name


def _url(hub: HubProcess, template: str, repo: str, org: str) -> str:
    oid = hashlib.sha256(b"parts").hexdigest()
    complete = sign(hub.secret(), "POST", f"/api/lfs/complete/{oid}/10", 600)
    return template.format(repo=repo, org=org, complete=complete)


@pytest.mark.parametrize(("method", "template"), JSON_ROUTES)
def test_deeply_nested_json_is_a_400_on_every_json_route(
    hub: HubProcess, http: httpx.Client, repo: str, org: str, method: str, template: str
) -> None:
    """``[`` x 100,000 was a RecursionError (500) on five routes; a JSON body of 65 levels is refused too."""
    url = _url(hub, template, repo, org)
    refused(http.request(method, url, content=DEEP), 400, "BadRequest")
    refused(http.request(method, url, content=b"[" * 65 + b"]" * 65), 400, "BadRequest")


@pytest.mark.parametrize(("method", "template"), JSON_ROUTES[:3] + JSON_ROUTES[-3:])
def test_a_60_mb_json_body_is_a_413(
    hub: HubProcess, http: httpx.Client, repo: str, org: str, method: str, template: str
) -> None:
    url = _url(hub, template, repo, org)
    body = b'{"name": "' + b"x" * (60 * MB) + b'"}'
    refused(http.request(method, url, content=body), 413, "PayloadTooLarge")  # announced by Content-Length
    refused(http.request(method, url, content=iter([body[:MB]] * 60)), 413, "PayloadTooLarge")  # chunked


def test_a_large_form_is_a_413(http: httpx.Client, repo: str) -> None:
    """Forms (``paths-info``, the web pages) are bounded as JSON bodies are: Starlette takes 1,000 fields of 1 MB."""
    url, form = f"/api/models/{repo}/paths-info/main", {"content-type": "application/x-www-form-urlencoded"}
    refused(http.post(url, content=b"paths=" + b"a" * (8 * MB), headers=form), 413, "PayloadTooLarge")
    large = b"&".join(b"paths=" + b"a" * 10_000 for _ in range(900))
    refused(http.post(url, content=iter([large]), headers=form), 413, "PayloadTooLarge")  # chunked: no length
    many = b"&".join(b"paths=%d" % i for i in range(1001))  # Starlette's bound, in the Hub's error shape
    refused(http.post(url, content=many, headers=form), 400, "BadRequest")
    assert [e["path"] for e in http.post(url, data={"paths": ["a.txt"]}).json()] == ["a.txt"]


def test_commit_lines_are_bounded(http: httpx.Client, repo: str) -> None:
    """An NDJSON commit is bounded per line (an inline file's base64 and a margin), in lines, and in nesting."""
    head = http.get(f"/api/models/{repo}").json()["sha"]
    refused(commit(http, repo, DEEP), 400, "BadRequest")
    long_line = b'{"key": "deletedFile", "value": {"path": "' + b"a" * (16 * MB) + b'"}}'
    refused(commit(http, repo, long_line), 413, "PayloadTooLarge")
    refused(commit(http, repo, raw=b"\n" * 200_001), 413, "PayloadTooLarge")  # lazily split: no list of 200k lines
    assert http.get(f"/api/models/{repo}").json()["sha"] == head  # nothing was committed


# -- headers --------------------------------------------------------------------------------------------------------


def test_oversized_or_countless_headers_are_a_431(hub: HubProcess, http: httpx.Client) -> None:
    """uvicorn with httptools takes a header of 100 MB and a million headers; the hub answers 431."""
    refused(http.get("/api/models", headers={"x-big": "a" * (100 * 2**10)}), 431, "HeaderFieldsTooLarge")
    refused(http.get("/api/models", headers={f"x-h{i}": "v" for i in range(150)}), 431, "HeaderFieldsTooLarge")
    # a long target counts (httptools itself refuses one over 64 KiB with a bare 400; httpx sends none that long)
    long_target = b"GET /api/models?" + b"q" * 60_000 + b" HTTP/1.1\r\nHost: hub\r\nX-Pad: " + b"p" * 8000
    refused(raw_exchange(hub, long_target + b"\r\n\r\n"), 431, "HeaderFieldsTooLarge")
    assert http.get("/api/models", headers={f"x-h{i}": "v" * 100 for i in range(50)}).status_code == 200


def test_a_head_that_never_ends_is_cut_off_with_flat_memory(hub: HubProcess, http: httpx.Client) -> None:
    """uvicorn's httptools protocol buffered a header of any size (100 MB: 6 s, ~100 MB of memory) before the app saw
    it; the hub's protocol closes the connection once the head passes its bound plus one read."""
    before = rss_mb(hub)
    host, port = hub.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        answer = b""
        try:
            sock.sendall(b"GET /api/models HTTP/1.1\r\nHost: hub\r\nX-Big: ")
            for _ in range(200):  # 200 MB, if the hub took it all
                sock.sendall(b"a" * MB)
        except OSError:  # closed by the hub: what it answered first may be readable
            with contextlib.suppress(OSError):
                answer = sock.recv(65536)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert rss_mb(hub) - before < 50, (before, rss_mb(hub))
    assert http.get("/api/models").status_code == 200


def test_a_head_that_stalls_is_a_408(hub: HubProcess) -> None:
    """A head sent a byte at a time held its connection for as long as the client liked."""
    r = raw_exchange(hub, b"GET /api/models HTTP/1.1\r\nHost: hub\r\nX-Slow: a")  # ... and nothing more
    refused(r, 408, "RequestTimeout")
    assert r.headers["connection"] == "close"


CONTROL_PATHS = [
    "/api/models/a%01b/c",
    "/api/models/admin/x%0d%0aSet-Cookie:%20a=b",
    "/a%00b/c/resolve/main/x",
    "/api/models/admin/%7F%1B%E2%80%A8%C3%A9",
]


@pytest.mark.parametrize("path", CONTROL_PATHS)
def test_control_characters_in_a_path_are_a_clean_4xx(hub: HubProcess, path: str) -> None:
    """The message quoting the path went raw into X-Error-Message and the server dropped the connection."""
    r = raw_exchange(hub, f"GET {path} HTTP/1.1\r\nHost: hub\r\n".encode() + _auth(hub) + b"\r\n")
    assert 400 <= r.status_code < 500 and json.loads(r.text)["error"]
    assert all(value.isascii() and value.isprintable() for value in r.headers.values()), r.headers
    assert "set-cookie" not in r.headers


# -- request bodies that stop -----------------------------------------------------------------------------------------


def test_a_body_that_stops_is_a_408_and_the_worker_serves_on(hub: HubProcess, http: httpx.Client) -> None:
    host, port = hub.url.removeprefix("http://").split(":")
    head = _post_head("/api/repos/create", 100) + _auth(hub) + b"\r\n"
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection((host, int(port)), timeout=60) as stalled:
        stalled.sendall(head + b'{"name": "st')  # ... and nothing more
        assert http.get("/api/models").status_code == 200  # the worker serves others meanwhile
        data = b""
        while chunk := stalled.recv(65536):  # the hub answers, then closes: EOF
            data += chunk
    conn.receive_data(data)
    response = conn.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 408
    headers = {k.decode().lower(): v.decode() for k, v in response.headers}
    assert headers["x-error-code"] == "RequestTimeout" and headers["connection"] == "close"
    assert http.get("/api/models").status_code == 200


def test_an_lfs_upload_that_stops_is_a_408_and_can_be_sent_again(hub: HubProcess) -> None:
    """The part received is dropped (the upload's temp file), and the same signed URL takes the whole file."""
    data = uuid.uuid4().bytes * (MB // 16)
    sha256 = hashlib.sha256(data).hexdigest()
    url = sign(hub.secret(), "PUT", f"/api/lfs/upload/{sha256}/{len(data)}", 600)
    head = f"PUT {url} HTTP/1.1\r\nHost: hub\r\nContent-Length: {len(data)}\r\n\r\n".encode()
    refused(raw_exchange(hub, head + data[: MB // 4]), 408, "RequestTimeout")  # a quarter, then nothing
    assert httpx.put(hub.url + url, content=data, timeout=60).status_code == 200


def test_a_slow_body_that_keeps_coming_is_served(hub: HubProcess, http: httpx.Client) -> None:
    """The bound is on a pause, not on the whole body: a body longer in coming than the timeout is taken."""
    name = f"slow{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name, "private": False}).encode()
    pieces = tuple(body[i : i + 4] for i in range(0, len(body), 4))
    assert len(pieces) * 0.3 > BODY_TIMEOUT
    head = _post_head("/api/repos/create", len(body)) + b"Connection: close\r\n" + _auth(hub) + b"\r\n"
    r = raw_exchange(hub, head, pieces, pause=0.3)
    assert r.status_code == 200, r.text
    assert http.get(f"/api/models/admin/{name}").status_code == 200


# -- file responses -------------------------------------------------------------------------------------------------


def test_files_are_served_with_nosniff(http: httpx.Client, repo: str) -> None:
    for method in ("GET", "HEAD"):
        r = http.request(method, f"/{repo}/resolve/main/a.txt")
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    assert http.get(f"/{repo}/resolve/main/missing.txt").headers["x-content-type-options"] == "nosniff"
    assert http.get(f"/{repo}").headers["x-content-type-options"] == "nosniff"
