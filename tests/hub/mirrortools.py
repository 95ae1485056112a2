"""A static upstream for mirror tests: a small HTTP server answering the Hub API's read routes for fixed files.

A real openckpt hub refuses malicious files itself, and cannot be told to cut a download in the middle; this server
plays an upstream that serves such files (huggingface.co hosts pickles), counts the downloads of each file, cuts
them on request, and can send them from another origin, as huggingface.co redirects to its CDN.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from tests.hubtools import free_port


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class StaticUpstream:
    """Model repos by id: each a commit id and its files; ``cut`` names files whose download stops halfway."""

    repos: dict[str, tuple[str, dict[str, bytes]]] = field(default_factory=dict)
    cut: set[str] = field(default_factory=set)
    pace: float = 0.0
    """Seconds to pause between the 1 MiB pieces of a download (lets concurrent readers overlap)."""
    gated: dict[str, str] = field(default_factory=dict)
    """Repo id → the token its files need (its listings stay public, as on the Hub)."""
    downloads: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    """Bytes of each file sent so far (all downloads)."""
    corrupt: set[str] = field(default_factory=set)
    """Files sent with their last byte changed: other bytes than the tree names."""
    redirect: bool = False
    """Whether ``/resolve`` redirects to the same path under ``/cdn`` at ``localhost`` (another origin), which sends
    the bytes (never gated, as the Hub's signed CDN URLs)."""
    cdn_authorizations: list[str | None] = field(default_factory=list)
    """The ``authorization`` header of each request to ``/cdn`` (None: none)."""
    url: str = ""

    def add(self, repo_id: str, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(json.dumps(sorted((p, git_oid(b)) for p, b in files.items())).encode()).hexdigest()
        self.repos[repo_id] = (sha, files)
        return sha

    def _entry(self, path: str, data: bytes) -> dict[str, object]:
        item: dict[str, object] = {"type": "file", "path": path, "size": len(data), "oid": git_oid(data)}
        if b"\0" in data or len(data) > 1 << 20:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            item["oid"] = git_oid(f"{pointer}size {len(data)}\n".encode())
            item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 0}
        return item

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = [unquote(p) for p in urlsplit(handler.path).path.split("/")[1:]]
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            found = self.repos.get(f"{parts[2]}/{parts[3]}")
            if found is None or parts[5] not in ("main", found[0]):
                return self._send(handler, 404, b'{"error": "not found"}')
            sha, files = found
            if parts[4] == "revision":
                body = {"id": f"{parts[2]}/{parts[3]}", "sha": sha, "lastModified": "2025-01-02T03:04:05.000Z"}
                return self._send(handler, 200, json.dumps(body).encode())
            if parts[4] == "tree":
                listing = [self._entry(p, b) for p, b in sorted(files.items())]
                return self._send(handler, 200, json.dumps(listing).encode())
            return self._send(handler, 404, b'{"error": "no such route"}')
        cdn = parts[0] == "cdn"
        if cdn:
            self.cdn_authorizations.append(handler.headers.get("authorization"))
            parts = parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            found = self.repos.get(f"{parts[0]}/{parts[1]}")
            path = "/".join(parts[4:])
            if found is None or path not in found[1]:
                return self._send(handler, 404, b'{"error": "not found"}')
            needed = self.gated.get(f"{parts[0]}/{parts[1]}")
            if not cdn and needed is not None and handler.headers.get("authorization") != f"Bearer {needed}":
                return self._send(handler, 403, b'{"error": "gated: ask for access"}')
            if self.redirect and not cdn:
                handler.send_response(302)
                handler.send_header("Location", self.url.replace("127.0.0.1", "localhost") + "/cdn" + handler.path)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return None
            self.downloads[path] += 1
            data = found[1][path]
            if path in self.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 1])
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            end = len(data) // 2 if path in self.cut else len(data)
            for start in range(0, end, 1 << 20):
                handler.wfile.write(data[start : min(start + (1 << 20), end)])
                self.sent[path] += min(start + (1 << 20), end) - start
                if self.pace:
                    time.sleep(self.pace)
            if path in self.cut:
                handler.close_connection = True
            return None
        return self._send(handler, 404, b'{"error": "no such route"}')

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@contextmanager
def static_upstream() -> Iterator[StaticUpstream]:
    """A :class:`StaticUpstream` listening on loopback for the duration of the block."""
    upstream = StaticUpstream()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            upstream.answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    upstream.url = f"http://127.0.0.1:{port}"
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
