"""The Hub's error shape: ``{"error": message}`` with ``X-Error-Code``, ``X-Error-Message`` and ``X-Request-Id``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from http import HTTPStatus

from fastapi.responses import JSONResponse

from openckpt.protocol import ERROR_CODE, ERROR_MESSAGE, REQUEST_ID

__all__ = ["error_response", "header_text", "status_code_name"]

HEADER_TEXT_LIMIT = 1000
"""Characters of a message repeated in ``X-Error-Message``; the body has all of it."""


def header_text(text: str, *, limit: int = HEADER_TEXT_LIMIT) -> str:
    """``text`` safe in a header value: printable ASCII, anything else escaped as in Python (``\\x01``,
    ``\\u00e9``), at most ``limit`` characters. Messages quote client input; a raw control character there would
    end the header (or make the server drop the connection)."""
    text = text.replace("\n", " ")
    safe = text if text.isascii() and text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def status_code_name(status: int) -> str:
    """An ``X-Error-Code`` for an HTTP status that has no error class of its own: ``NotFound``, ``MethodNotAllowed``."""
    try:
        return HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        return "HttpError"


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The answer to a failed request, as the Hub gives it."""
    return JSONResponse(
        {"error": message},
        status_code=status,
        headers={
            ERROR_CODE: code,
            ERROR_MESSAGE: header_text(message),
            REQUEST_ID: uuid.uuid4().hex,
            **(headers or {}),
        },
    )
