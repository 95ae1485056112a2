"""Bounds on every request, as an ASGI middleware: the size and number of its headers (431), how long its body may
pause (408), the size of a form (413); plus ``X-Content-Type-Options: nosniff`` on every response, files included.

uvicorn's httptools protocol bounds neither the headers nor the body's pace; a client that stopped sending mid-body
held a route forever. The pause is bounded, not the transfer: an upload of any size takes as long as it needs as long
as bytes keep coming. Forms are bounded here, as Starlette parses them; other bodies where routes read them
(:mod:`openckpt.hub.bodies`).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openckpt.errors import HeaderFieldsTooLargeError, HubError, PayloadTooLargeError, RequestTimeoutError
from openckpt.hub.error_response import error_response

__all__ = ["Limits"]

NOSNIFF = (b"x-content-type-options", b"nosniff")
FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")
UPLOAD_FORM = re.compile(r"^/(?!api/)(?:datasets/)?[^/]+/[^/]+/upload(?:/|$)")
"""The web UI's upload form (``routes/ui/owner.py``): a multipart body bounded by ``max_upload_bytes``, not by the
small limit of other forms."""


class Limits:
    """Refuse requests whose target and headers exceed ``max_header_bytes`` or whose headers are more than
    ``max_headers``; fail a body read that waits over ``body_timeout`` seconds for the client, or that takes a form
    past ``max_form_bytes`` (an upload form past ``max_upload_bytes``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int,
        max_headers: int,
        body_timeout: float,
        max_form_bytes: int,
        max_upload_bytes: int = 512 * 2**20,
    ) -> None:
        self.app = app
        self.max_header_bytes, self.max_headers, self.body_timeout = max_header_bytes, max_headers, body_timeout
        self.max_form_bytes, self.max_upload_bytes = max_form_bytes, max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_nosniff(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                if not any(name.lower() == NOSNIFF[0] for name, _ in headers):
                    message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        limit = None
        if (kind := _header(scope, b"content-type").lower()).startswith(FORMS):
            upload = kind.startswith(b"multipart/") and scope["method"] == "POST" and UPLOAD_FORM.match(scope["path"])
            limit = self.max_upload_bytes if upload else self.max_form_bytes
        if (refused := self._refusal(scope, limit)) is not None:
            await _respond(refused, scope, receive, send_nosniff)
            return
        try:
            await self.app(scope, _TimedBody(receive, self.body_timeout, limit), send_nosniff)
        except (RequestTimeoutError, PayloadTooLargeError) as e:  # raised outside a route (else a response there)
            if started:
                raise
            await _respond(e, scope, receive, send_nosniff)

    def _refusal(self, scope: Scope, form_limit: int | None) -> HubError | None:
        """What refuses the request before it reaches a route: its headers, or the announced length of a form."""
        if (refused := self._check_headers(scope)) is not None:
            return refused
        declared = _header(scope, b"content-length")
        if form_limit is not None and declared.isdigit() and int(declared) > form_limit:
            return PayloadTooLargeError(f"form body of {int(declared)} bytes: over {form_limit}")
        return None

    def _check_headers(self, scope: Scope) -> HeaderFieldsTooLargeError | None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if len(headers) > self.max_headers:
            return HeaderFieldsTooLargeError(f"{len(headers)} request headers: more than {self.max_headers}")
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        size = target + sum(len(name) + len(value) + 4 for name, value in headers)  # ": " and CRLF
        if size > self.max_header_bytes:
            return HeaderFieldsTooLargeError(
                f"request target and headers of {size} bytes: over {self.max_header_bytes}"
            )
        return None


async def _respond(error: HubError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``error`` and close the connection: the body of the request may still be coming."""
    await error_response(error.status, error.code, str(error), {**error.headers, "Connection": "close"})(
        scope, receive, send
    )


def _header(scope: Scope, name: bytes) -> bytes:
    return next((value for key, value in scope["headers"] if key == name), b"")


class _TimedBody:
    """``receive``, failing with :class:`RequestTimeoutError` once one call has waited ``timeout`` seconds for the
    client, and with :class:`PayloadTooLargeError` once the body passes ``limit`` bytes (if given). One timer per
    request, re-armed lazily, rather than one per message: bodies arrive in many small messages and a timer each
    would slow large uploads."""

    def __init__(self, receive: Receive, timeout: float, limit: int | None = None) -> None:
        self.receive, self.timeout, self.limit, self.received = receive, timeout, limit, 0
        self.loop = asyncio.get_running_loop()
        self.since = 0.0
        """When the pending call began waiting."""
        self.waiter: asyncio.Task[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.expired = self.done = False

    async def __call__(self) -> Message:
        if self.done:  # the body is complete: later calls wait for a disconnect, for as long as the response takes
            return await self.receive()
        self.since, self.waiter = self.loop.time(), asyncio.current_task()
        if self.timer is None:
            self.timer = self.loop.call_at(self.since + self.timeout, self._check)
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            if self.expired and self.waiter is not None and self.waiter.uncancel() == 0:
                self.done = True
                raise RequestTimeoutError(
                    f"no request body received for {self.timeout:g} seconds", headers={"Connection": "close"}
                ) from None
            raise
        finally:
            self.waiter = None
        if self.limit is not None and message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self._finish()
                raise PayloadTooLargeError(f"form body over {self.limit} bytes", headers={"Connection": "close"})
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._finish()
        return message

    def _finish(self) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        """The timer: time out the pending call if it is due, else come back when it will be."""
        self.timer = None
        if self.waiter is None or self.done:
            return  # the next call arms it again
        due = self.since + self.timeout
        if self.loop.time() >= due:
            self.expired = True
            self.waiter.cancel()
        else:
            self.timer = self.loop.call_at(due, self._check)
