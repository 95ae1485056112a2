"""Request bodies read within bounds: their size, the nesting of JSON values, the length and number of NDJSON lines.

Every route that reads JSON reads it here, so a body over a bound is a 413 and malformed or too deeply nested JSON a
400, both in the Hub's error shape, never a 500 or a worker busy with one request. A JSON object body may be read as a
Pydantic model (:class:`JsonObject`, :func:`read_model`; routes take it as ``openckpt.hub.deps.json_body(Model)``):
FastAPI's own body parsing, which has no bound, is never used. (How long a client may pause
while sending a body is bounded by :mod:`openckpt.hub.limits`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, ValidationError

from openckpt.errors import BadRequestError, PayloadTooLargeError
from openckpt.hub.context import hub_of

__all__ = [
    "MAX_DEPTH",
    "Invalid",
    "JsonObject",
    "ndjson_lines",
    "parse_json",
    "read_bounded",
    "read_json",
    "read_model",
    "validate",
]

MAX_DEPTH = 64
"""The deepest nesting of arrays and objects a JSON body may have; the Hub's own bodies need fewer than 10."""


async def read_bounded(request: Request, limit: int) -> bytes:
    """The request body, or a :class:`PayloadTooLargeError` once it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, optional: bool = False) -> Any:
    """The request's JSON body, at most ``max_json_bytes`` long and :data:`MAX_DEPTH` deep; an empty body is ``{}``
    if ``optional``, else a :class:`BadRequestError`."""
    raw = await read_bounded(request, hub_of(request).settings.max_json_bytes)
    if optional and not raw.strip():
        return {}
    return parse_json(raw)


class JsonObject(BaseModel):
    """A JSON object body as a model: values are taken as sent (a string field takes only a string, never a number),
    keys the model does not name are ignored, and what does not fit is a 400 (:func:`validate`). A field's own message
    is its :class:`Invalid` annotation: ``organization: Annotated[str | None, Invalid("must be a name")] = None``."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, populate_by_name=True)
    expected: ClassVar[str] = "expected a JSON object"
    """The message of a body that does not fit: the shape it should have, as ``expected JSON {name, type?}``."""

    def sent(self) -> dict[str, Any]:
        """The fields the body named (by their Python names), as a partial update reads them."""
        return {name: getattr(self, name) for name in self.model_fields_set}


@dataclass(frozen=True, slots=True)
class Invalid:
    """The message of a 400 for a :class:`JsonObject` field whose value does not fit, as ``Annotated`` metadata."""

    message: str


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M], *, optional: bool = False) -> M:
    """The request's JSON body as :func:`read_json` reads it, validated as ``model`` (:func:`validate`)."""
    return validate(model, await read_json(request, optional=optional))


def validate(model: type[M], value: Any) -> M:
    """``value`` as ``model``; a :class:`BadRequestError` for anything but a JSON object (``expected a JSON object``),
    or one that does not fit.

    Its message is of the first key that does not fit: its field's :class:`Invalid` message (unless the key is
    missing), else the message its validator raised, else the model's ``expected`` (:class:`JsonObject`)."""
    if not isinstance(value, dict):
        raise BadRequestError("expected a JSON object")
    expected: str = getattr(model, "expected", "expected a JSON object")
    try:
        return model.model_validate(value)
    except ValidationError as e:
        error = e.errors(include_url=False)[0]
        key = error["loc"][0] if error["loc"] else None
        for name, field in model.model_fields.items():
            message = next((m.message for m in field.metadata if isinstance(m, Invalid)), None)
            if key in (name, field.alias) and message is not None and error["type"] != "missing":
                raise BadRequestError(message) from None
        cause = error.get("ctx", {}).get("error")
        if error["type"] == "value_error" and cause is not None:
            raise BadRequestError(str(cause)) from None
        raise BadRequestError(expected) from None


def parse_json(raw: bytes | str, *, what: str = "request body") -> Any:
    """``raw`` parsed as JSON nested at most :data:`MAX_DEPTH` deep, or a :class:`BadRequestError` naming ``what``."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadRequestError(f"{what} is JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # also a UnicodeDecodeError
        raise BadRequestError(f"{what} is not valid JSON: {e}") from None
    _check_depth(value, what)
    return value


def _check_depth(value: Any, what: str) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequestError(f"{what} is JSON nested deeper than {MAX_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def ndjson_lines(raw: bytes, *, line_limit: int, max_lines: int) -> Iterator[tuple[int, Any]]:
    """The non-blank lines of ``raw`` as ``(line number, JSON value)``: a :class:`PayloadTooLargeError` for a line over
    ``line_limit`` bytes or more than ``max_lines`` lines (blank ones included), a :class:`BadRequestError` for a line
    that is not JSON. Lines are split lazily, so a body of empty lines costs no memory."""
    start, number = 0, 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end
        number += 1
        if number > max_lines:
            raise PayloadTooLargeError(f"more than {max_lines} lines in one request")
        if end - start > line_limit:
            raise PayloadTooLargeError(f"line {number} is longer than {line_limit} bytes")
        line = raw[start:end]
        start = end + 1
        if line.strip():
            yield number, parse_json(line, what=f"line {number}")
