"""CAS access tokens and transfer URLs: signed with the hub's secret like LFS transfer URLs.

A token names its scope (``read`` or ``write``), the repo (primary key) or bucket (``b`` + primary key) it was
issued for, the access token it was minted with (0: anonymous, or the hub itself) and its expiry, so that it survives
restarts and works on every worker.
Checking one costs a primary-key lookup: once its access token is revoked, it is refused. A transfer URL authorises
reading one byte range of one xorb until it expires (``signed_url_ttl``), like a signed S3 URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from sqlalchemy import bindparam, select

from openckpt.errors import ForbiddenError, UnauthorizedError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Token
from openckpt.hub.services.lfs.transfers import check_signature, sign

__all__ = ["CAS_PATH", "HUB_REPO", "TRANSFER_PATH", "CasToken", "check_token", "issue_token", "transfer_url"]

CAS_PATH = "/cas"
"""Where the CAS lives on the hub's own origin: the ``casUrl`` is ``<origin>/cas``."""
TRANSFER_PATH = f"{CAS_PATH}/transfer"
HUB_REPO = 0
"""The repo of tokens the hub mints for itself (server-side ingestion): no repo's uploads."""
SCOPES = ("read", "write")
_REVOKED_AT = select(Token.revoked_at).where(Token.id == bindparam("id"))
"""The minting token's revocation, looked up on every CAS request (by primary key)."""
_PREFIX = "xet2"
"""``xet1`` tokens (without the access token) are refused: clients ask for a new token on their next transfer."""


@dataclass(frozen=True)
class CasToken:
    scope: str
    repo: int
    """Primary key of the repo the token was issued for."""
    minted_by: int
    """Id of the access token it was issued to; 0 for anonymous callers and the hub itself."""
    expires: int
    bucket: int | None = None
    """Primary key of the bucket a bucket's token was issued for (its ``repo`` is then :data:`HUB_REPO`)."""

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def _claims(scope: str, target: str, minted_by: int) -> tuple[str, str]:
    kind = "bucket" if target.startswith("b") else "repo"
    return f"XET-{scope.upper()}", f"{CAS_PATH}/{kind}/{target.removeprefix('b')}/token/{minted_by}"


def issue_token(
    secret: bytes, scope: str, repo: int, ttl: int, *, minted_by: int | None, bucket: int | None = None
) -> tuple[str, int]:
    """A token of ``scope`` for ``repo`` (or, given ``bucket``, for that bucket), valid ``ttl`` seconds unless the
    access token ``minted_by`` (None: anonymous or the hub itself) is revoked first: ``(token, expiry in Unix
    seconds)``."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be read or write, not {scope!r}")
    target = str(repo) if bucket is None else f"b{bucket}"
    method, path = _claims(scope, target, minted_by or 0)
    query = parse_qs(sign(secret, method, path, ttl).partition("?")[2])
    expires, sig = query["exp"][0], query["sig"][0]
    return f"{_PREFIX}.{scope}.{target}.{minted_by or 0}.{expires}.{sig}", int(expires)


def check_token(secret: bytes, header: str | None, *, db: Database, write: bool = False) -> CasToken:
    """The token of an ``Authorization: Bearer`` header; 401 if absent, forged, expired or its access token was
    revoked (looked up in ``db``), 403 if read-only where ``write`` is needed."""
    scheme, _, value = (header or "").partition(" ")
    parts = value.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 6 or parts[0] != _PREFIX or parts[1] not in SCOPES:
        raise UnauthorizedError("the CAS needs a Xet token from the hub's xet-read-token or xet-write-token route")
    _, scope, target, minted_by, expires, sig = parts
    if not (target.removeprefix("b").isdigit() and minted_by.isdigit()):
        raise UnauthorizedError("invalid Xet token")
    method, path = _claims(scope, target, int(minted_by))
    try:
        check_signature(secret, method, path, expires, sig)
    except ForbiddenError as e:
        raise UnauthorizedError(f"invalid Xet token: {e}") from None
    bucket = int(target[1:]) if target.startswith("b") else None
    token = CasToken(scope, HUB_REPO if bucket is not None else int(target), int(minted_by), int(expires), bucket)
    if token.minted_by:
        with db.read() as session:
            revoked = session.execute(_REVOKED_AT, {"id": token.minted_by}).first()
        if revoked is None or revoked[0] is not None:
            raise UnauthorizedError("this Xet token's access token was revoked")
    if write and not token.can_write:
        raise ForbiddenError("this Xet token is read-only: ask the hub for a xet-write-token")
    return token


def transfer_url(secret: bytes, base: str, xorb: str, start: int, end: int, ttl: int) -> str:
    """A self-authorising URL for bytes ``[start, end]`` (inclusive) of a xorb, for ``ttl`` seconds."""
    return base + sign(secret, "GET", f"{TRANSFER_PATH}/{xorb}/{start}-{end}", ttl)
