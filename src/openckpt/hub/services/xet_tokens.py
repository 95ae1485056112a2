"""CAS access tokens and transfer URLs: stateless, signed with the hub's secret like LFS transfer URLs.

A token names its scope (``read`` or ``write``), the repo (primary key) it was issued for and its expiry, so that it
survives restarts and works on every worker. A transfer URL authorises reading one byte range of one xorb.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from openckpt.errors import ForbiddenError, UnauthorizedError
from openckpt.hub.services.transfers import check_signature, sign

__all__ = ["CAS_PATH", "HUB_REPO", "TRANSFER_PATH", "CasToken", "check_token", "issue_token", "transfer_url"]

CAS_PATH = "/cas"
"""Where the CAS lives on the hub's own origin: the ``casUrl`` is ``<origin>/cas``."""
TRANSFER_PATH = f"{CAS_PATH}/transfer"
HUB_REPO = 0
"""The repo of tokens the hub mints for itself (server-side ingestion): no repo's uploads."""
SCOPES = ("read", "write")
_PREFIX = "xet1"


@dataclass(frozen=True)
class CasToken:
    scope: str
    repo: int
    """Primary key of the repo the token was issued for."""
    expires: int

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def _claims(scope: str, repo: int) -> tuple[str, str]:
    return f"XET-{scope.upper()}", f"{CAS_PATH}/repo/{repo}"


def issue_token(secret: bytes, scope: str, repo: int, ttl: int) -> tuple[str, int]:
    """A token of ``scope`` for ``repo``, valid ``ttl`` seconds: ``(token, expiry in Unix seconds)``."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be read or write, not {scope!r}")
    method, path = _claims(scope, repo)
    query = parse_qs(sign(secret, method, path, ttl).partition("?")[2])
    expires, sig = query["exp"][0], query["sig"][0]
    return f"{_PREFIX}.{scope}.{repo}.{expires}.{sig}", int(expires)


def check_token(secret: bytes, header: str | None, *, write: bool = False) -> CasToken:
    """The token of an ``Authorization: Bearer`` header; 401 if absent, forged or expired, 403 if read-only where
    ``write`` is needed."""
    scheme, _, value = (header or "").partition(" ")
    parts = value.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 5 or parts[0] != _PREFIX or parts[1] not in SCOPES:
        raise UnauthorizedError("the CAS needs a Xet token from the hub's xet-read-token or xet-write-token route")
    _, scope, repo, expires, sig = parts
    if not repo.isdigit():
        raise UnauthorizedError("invalid Xet token")
    method, path = _claims(scope, int(repo))
    try:
        check_signature(secret, method, path, expires, sig)
    except ForbiddenError as e:
        raise UnauthorizedError(f"invalid Xet token: {e}") from None
    token = CasToken(scope, int(repo), int(expires))
    if write and not token.can_write:
        raise ForbiddenError("this Xet token is read-only: ask the hub for a xet-write-token")
    return token


def transfer_url(secret: bytes, base: str, xorb: str, start: int, end: int, ttl: int) -> str:
    """A self-authorising URL for bytes ``[start, end]`` (inclusive) of a xorb, for ``ttl`` seconds."""
    return base + sign(secret, "GET", f"{TRANSFER_PATH}/{xorb}/{start}-{end}", ttl)
