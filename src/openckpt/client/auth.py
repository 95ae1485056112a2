"""``login``, ``whoami`` and ``logout``: a token per hub in openckpt's store, huggingface_hub's file only when asked.

``login`` validates the token with ``whoami`` at the hub, stores it for that endpoint (:mod:`.tokens`) and makes
the hub the default one (:mod:`.config`). huggingface_hub's token file (``$HF_HOME/token``) usually holds a
huggingface.co token that ``hf`` and ``transformers`` send to huggingface.co: it is written only with
``add_to_hf_token=True``, or when ``HF_ENDPOINT`` names this hub and the file is absent or holds this token already.
``huggingface_hub.login`` itself is not called because it validates against the endpoint fixed when
huggingface_hub was imported, not the one given here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HfHubHTTPError

from openckpt.client.api import hf_api
from openckpt.client.config import resolve_endpoint, update_config
from openckpt.client.tokens import (
    forget_token,
    hf_endpoint,
    hf_token_path,
    read_hf_token,
    resolve_token,
    store_token,
    tokens_path,
)
from openckpt.errors import UnauthorizedError
from openckpt.fsutil import atomic_write

__all__ = ["Identity", "LoginResult", "LogoutResult", "login", "logout", "whoami"]


@dataclass(frozen=True)
class LoginResult:
    endpoint: str
    user: str
    role: str | None
    """The token's role as the hub reports it (``read`` or ``write``)."""
    token_path: Path
    """openckpt's token store."""
    config_path: Path
    hf_token_path: Path | None
    """huggingface_hub's token file if it was written, else None."""
    hf_token_kept: bool
    """True if huggingface_hub's token file holds another token and was left as it is."""


@dataclass(frozen=True)
class Identity:
    endpoint: str
    user: str
    fullname: str
    role: str | None
    orgs: list[str]
    token_source: str


@dataclass(frozen=True)
class LogoutResult:
    endpoint: str
    removed: list[Path]
    """The files a token was removed from (empty if none held one for the endpoint)."""


def _whoami(endpoint: str, token: str, *, saving: bool = False) -> dict[str, Any]:
    api = hf_api(endpoint, token)
    try:
        info: dict[str, Any] = api.whoami()
    except HfHubHTTPError as e:
        if e.response is None or e.response.status_code != 401:
            raise
        then = "nothing saved" if saving else "run `openckpt login` with a valid one"
        raise UnauthorizedError(f"{api.endpoint} does not accept this token (401): {then}") from e
    return info


def _role(info: dict[str, Any]) -> str | None:
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    return str(role) if role else None


def login(token: str, *, endpoint: str | None = None, add_to_hf_token: bool = False) -> LoginResult:
    """Validate ``token`` at the hub, store it for that hub and make the hub the default (see the module)."""
    url = resolve_endpoint(endpoint)
    info = _whoami(url, token, saving=True)
    tokens = store_token(url, token)
    config = update_config(endpoint=url)
    existing = read_hf_token()
    written: Path | None = None
    kept = False
    if add_to_hf_token or (url == hf_endpoint() and existing in (None, token)):
        written = hf_token_path()
        written.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(written, token.encode(), mode=0o600)
    elif existing is not None and existing != token:
        kept = True
    return LoginResult(url, str(info["name"]), _role(info), tokens, config, written, kept)


def whoami(*, endpoint: str | None = None, token: str | None = None) -> Identity:
    """Who the hub says the resolved token belongs to; :class:`UnauthorizedError` if there is no token."""
    url = resolve_endpoint(endpoint)
    resolved = resolve_token(url, token)
    if resolved.value is None:
        raise UnauthorizedError(f"not logged in to {url}: run `openckpt login --endpoint {url}` or set HF_TOKEN")
    info = _whoami(url, resolved.value)
    orgs = [str(o.get("name")) for o in info.get("orgs") or [] if isinstance(o, dict)]
    return Identity(url, str(info["name"]), str(info.get("fullname") or ""), _role(info), orgs, resolved.source)


def logout(*, endpoint: str | None = None) -> LogoutResult:
    """Forget the token stored for the hub; also empty huggingface_hub's token file if it holds that token."""
    url = resolve_endpoint(endpoint)
    removed: list[Path] = []
    token = forget_token(url)
    if token is not None:
        removed.append(tokens_path())
        if read_hf_token() == token:
            hf_token_path().unlink(missing_ok=True)
            removed.append(hf_token_path())
    return LogoutResult(url, removed)
