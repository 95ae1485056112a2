"""The hub's error boundary: which status and ``X-Error-Code`` each exception is answered with, and request ids.

A :class:`HubError` carries its own status and code. A library error is answered by its entry in
:data:`LIBRARY_ERRORS` (the first of its classes, most derived first, that has one) and any other exception, library
error or not (``ValueError``, ``KeyError``, a corrupted store's ``IntegrityError``), is a server fault: a 500
``InternalError`` whose traceback is logged with the request id, never a 400.

Every response carries ``X-Request-Id``: the client's own (``X-Request-Id``, else ``X-Amzn-Trace-Id``, as
huggingface_hub sends one with each request) when it is well-formed, a new one otherwise. huggingface_hub quotes it in
the message of the error it raises, so a user's report leads to the log line.
"""

from __future__ import annotations

import logging
import re
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openckpt.errors import (
    HubError,
    InvalidDigestError,
    LicenseError,
    OpenckptError,
    RepoMovedError,
    StorageError,
    UploadAbortedError,
    UploadMismatchError,
    UploadTooLargeError,
)
from openckpt.hub.context import moved_location
from openckpt.hub.error_response import error_response
from openckpt.protocol import REQUEST_ID

__all__ = ["INTERNAL", "LIBRARY_ERRORS", "RequestIds", "answer_of", "install"]

log = logging.getLogger("openckpt.hub")

INTERNAL = (500, "InternalError")
"""The answer to anything the hub did not expect: the client is not at fault."""

LIBRARY_ERRORS: dict[type[OpenckptError], tuple[int, str]] = {
    # the store checks an upload's bytes against the size and sha256 its client announced: the client's bytes
    UploadMismatchError: (400, "BadRequest"),
    UploadAbortedError: (400, "BadRequest"),  # the client's upload was aborted (it went away, or timed out)
    UploadTooLargeError: (413, "PayloadTooLarge"),
    InvalidDigestError: (400, "BadRequest"),  # a sha256 named in the request's path or body
    LicenseError: (400, "BadRequest"),  # a license policy sent by the client; stored ones were checked when set
    StorageError: (503, "StorageUnavailable"),  # the bucket or disk is unreachable: retry (StorageBusyError too)
}
"""Library errors the hub answers as the client's fault, or as a passing outage; any other library error is a 500
(``IntegrityError`` of a stored blob, ``FormatError`` of a stored file: the server's state is wrong)."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:;=-]{0,127}")
"""A client's request id the hub takes over: at most 128 header-safe characters (a UUID, an AWS trace id)."""


def answer_of(kind: type[BaseException]) -> tuple[int, str]:
    """The status and ``X-Error-Code`` the hub answers an exception of class ``kind`` with."""
    if issubclass(kind, HubError):
        return kind.status, kind.code
    for base in kind.__mro__:
        if base in LIBRARY_ERRORS:
            return LIBRARY_ERRORS[base]
    return INTERNAL


def request_id_of(scope: Scope) -> str:
    """The request's id: the client's when well-formed, a new one otherwise."""
    headers: dict[bytes, bytes] = dict(scope.get("headers") or ())
    for name in (b"x-request-id", b"x-amzn-trace-id"):
        given = headers.get(name, b"").decode("latin-1")
        if _REQUEST_ID.fullmatch(given):
            return given
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: gives each HTTP request an id (``scope["state"]["request_id"]``), sets ``X-Request-Id`` on
    its response, and answers an exception nothing else handled with a logged 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s failed: %s %s", request_id, scope.get("method"), scope.get("path"))
            if started:  # the status is out: the server closes the connection, the client sees a short body
                raise
            status, code = INTERNAL
            message = f"internal error; the hub's log has it under request id {request_id}"
            await error_response(status, code, message)(scope, receive, send_with_id)


def install(app: FastAPI) -> None:
    """Answer every exception of ``app`` as :func:`answer_of` says; add :class:`RequestIds` (outermost: last added)."""

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc), exc.headers)

    @app.exception_handler(RepoMovedError)
    async def repo_moved(request: Request, exc: RepoMovedError) -> Response:
        """Reads of a moved repo's old name: 307 to its new one, as on the Hub; writes: 404."""
        location = moved_location(request, exc.old_id, exc.new_id) if request.method in ("GET", "HEAD") else None
        if location is None:
            return error_response(exc.status, exc.code, str(exc), exc.headers)
        return Response(status_code=307, headers={"Location": location, REQUEST_ID: uuid.uuid4().hex})

    @app.exception_handler(OpenckptError)
    async def library_error(request: Request, exc: OpenckptError) -> JSONResponse:
        status, code = answer_of(type(exc))
        if (status, code) == INTERNAL:
            raise exc  # RequestIds logs it with its traceback and answers 500
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        return error_response(status, code, str(exc), headers)

    app.add_middleware(RequestIds)
