"""uvicorn's httptools protocol with bounds on the request head, which uvicorn leaves unbounded: its size (it took a
request line and headers of 100 MB whole, for 6 s and some 100 MB of memory, before the app saw the request) and how
long it may take to arrive (a head sent a byte at a time held its connection forever).

The exact bounds are the app's (:mod:`openckpt.hub.limits` answers 431 in the Hub's error shape); this one only
stops a head that would take memory or time before reaching them: a head past ``max_header_bytes`` and one more read
(a read may bring the start of the body with the head) gets a 431 and the connection closed, and a head not complete
``body_timeout`` seconds after its first byte a 408.
"""

from __future__ import annotations

import asyncio
import functools
import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from openckpt.errors import HeaderFieldsTooLargeError, HubError, RequestTimeoutError
from openckpt.hub.error_response import header_text
from openckpt.hub.settings import Settings
from openckpt.protocol import ERROR_CODE, ERROR_MESSAGE

__all__ = ["BoundedHttpToolsProtocol"]

READ_SIZE = 256 * 2**10
"""The most the event loop reads at once (uvloop's buffer; asyncio reads less)."""


@functools.cache
def _bounds() -> tuple[int, float]:
    settings = Settings.configured()
    return settings.max_header_bytes + READ_SIZE, settings.body_timeout


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol`, refusing a request head that grows too large or arrives too slowly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_limit, self.head_timeout = _bounds()
        self.head_bytes, self.in_head, self.refused = 0, True, False
        self.head_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_head:
            if self.head_timer is None:
                self.head_timer = asyncio.get_running_loop().call_later(self.head_timeout, self._head_too_slow)
            self.head_bytes += len(data)
            if self.head_bytes > self.head_limit:
                self._refuse(HeaderFieldsTooLargeError(f"request head over {self.head_limit} bytes"))
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.head_bytes = True, 0  # the next request's head comes next (on a kept-alive connection)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def _end_head(self) -> None:
        self.in_head = False
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if self.in_head and not self.refused:
            self._refuse(RequestTimeoutError(f"request head not complete in {self.head_timeout:g} seconds"))

    def _refuse(self, error: HubError) -> None:
        """Answer ``error`` and close; while an earlier response is still being sent, only close."""
        self._end_head()
        self.refused = True
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_response(error))
        self.transport.close()


def _response(error: HubError) -> bytes:
    body = json.dumps({"error": str(error)}).encode()
    head = [
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        "x-content-type-options: nosniff",
        f"{ERROR_CODE}: {error.code}",
        f"{ERROR_MESSAGE}: {header_text(str(error))}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
