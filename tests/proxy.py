"""A TCP proxy in front of a hub that records requests and counts the bytes clients send (tests and benches)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading

__all__ = ["RecordingProxy"]


class RecordingProxy:
    """A TCP proxy to the hub that records the request line of every HTTP request and counts the bytes clients send;
    ``cut(prefix, after)`` drops the connection once, ``after`` bytes into the answer to the next request whose path
    starts with ``prefix``.

    Clients pointed at it see it as the hub's origin, so the CAS URL the hub hands out goes through it too.
    """

    REQUEST = re.compile(rb"(GET|HEAD|POST|PUT) (/[^ ?]*)[^ ]* HTTP/1\.1\r\n")

    def __init__(self, upstream: str) -> None:
        self.upstream_port = int(upstream.rsplit(":", 1)[1])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[str] = []
        self.sent = 0
        self.cuts = 0
        self._cut: tuple[str, int] | None = None
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.requests, self.sent, self.cuts, self._cut = [], 0, 0, None

    def cut(self, prefix: str, after: int) -> None:
        with self.lock:
            self._cut = (prefix, after)

    def seen(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(f"{method} {prefix}"))

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            armed: list[int] = []  # bytes of the answer still to pass before this connection is cut
            threading.Thread(target=self._pipe, args=(downstream, upstream, armed, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, downstream, armed, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, armed: list[int], upstream: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                with self.lock:
                    if upstream:
                        self.sent += len(data)
                        lines = [f"{m.decode()} {p.decode()}" for m, p in self.REQUEST.findall(data)]
                        self.requests += lines
                        if self._cut and any(line.split(" ", 1)[1].startswith(self._cut[0]) for line in lines):
                            armed.append(self._cut[1])
                            self._cut = None
                    elif armed:
                        if len(data) >= armed[0]:
                            dst.sendall(data[: armed[0]])
                            self.cuts += 1
                            return
                        armed[0] -= len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
