"""Bounds on every request, as an ASGI middleware: the size and number of its headers (431), and how long its body
may pause (408); plus ``X-Content-Type-Options: nosniff`` on every response, files included.

uvicorn's httptools protocol bounds neither the headers nor the body's pace; a client that stopped sending mid-body
held a route forever. The pause is bounded, not the transfer: an upload of any size takes as long as it needs as long
as bytes keep coming. Body sizes and JSON shapes are bounded where routes read them (:mod:`openckpt.hub.bodies`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openckpt.errors import HeaderFieldsTooLargeError, RequestTimeoutError
from openckpt.hub.error_response import error_response

__all__ = ["Limits"]

NOSNIFF = (b"x-content-type-options", b"nosniff")


class Limits:
    """Refuse requests whose target and headers exceed ``max_header_bytes`` or whose headers are more than
    ``max_headers``; fail a body read that waits over ``body_timeout`` seconds for the client."""

    def __init__(self, app: ASGIApp, *, max_header_bytes: int, max_headers: int, body_timeout: float) -> None:
        self.app = app
        self.max_header_bytes, self.max_headers, self.body_timeout = max_header_bytes, max_headers, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (refused := self._check_headers(scope)) is not None:
            response = error_response(refused.status, refused.code, str(refused), {"Connection": "close"})
            await response(scope, receive, send)
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

        try:
            await self.app(scope, _TimedBody(receive, self.body_timeout), send_nosniff)
        except RequestTimeoutError as e:  # raised outside a route (the routes' errors become responses there)
            if started:
                raise
            await error_response(e.status, e.code, str(e), e.headers)(scope, receive, send_nosniff)

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


class _TimedBody:
    """``receive``, failing with :class:`RequestTimeoutError` once one call has waited ``timeout`` seconds for the
    client. One timer per request, re-armed lazily, rather than one per message: bodies arrive in many small messages
    and a timer each would slow large uploads."""

    def __init__(self, receive: Receive, timeout: float) -> None:
        self.receive, self.timeout = receive, timeout
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
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
        return message

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
