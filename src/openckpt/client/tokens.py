"""Which token the client sends to a hub, and openckpt's own token store (one token per endpoint).

The token for an endpoint is, in order: an explicit argument (``--token``), ``HF_TOKEN``, the token ``openckpt
login`` stored for that endpoint (``tokens.json`` next to openckpt's config file, mode 0600), then
huggingface_hub's token file (``$HF_HOME/token``) only when the endpoint is the one ``HF_ENDPOINT`` names: that
file usually holds a huggingface.co token, which must never be sent to another hub. Otherwise no token.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from openckpt.client.config import config_path
from openckpt.errors import FormatError
from openckpt.fsutil import atomic_write

__all__ = [
    "ResolvedToken",
    "forget_token",
    "hf_endpoint",
    "hf_token_path",
    "read_hf_token",
    "read_tokens",
    "resolve_token",
    "store_token",
    "tokens_path",
]


@dataclass(frozen=True)
class ResolvedToken:
    value: str | None
    source: str
    """Where it came from: ``--token``, ``HF_TOKEN``, the path of a token file, or ``none``."""


def tokens_path() -> Path:
    """openckpt's token store (it need not exist)."""
    return config_path().parent / "tokens.json"


def hf_token_path() -> Path:
    """huggingface_hub's token file, the one ``hf auth login`` writes."""
    return Path(constants.HF_TOKEN_PATH)


def hf_endpoint() -> str | None:
    """The endpoint ``HF_ENDPOINT`` names, without a trailing slash; None if unset."""
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def read_tokens() -> dict[str, str]:
    """Endpoint → token, as ``openckpt login`` stored them; empty if there is no store."""
    path = tokens_path()
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON: {e}", path=path) from e
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise FormatError("the token store must map endpoints to tokens", path=path)
    return data


def _write_tokens(tokens: dict[str, str]) -> Path:
    path = tokens_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(tokens, indent=2, sort_keys=True).encode() + b"\n", mode=0o600)
    return path


def store_token(endpoint: str, token: str) -> Path:
    """Remember ``token`` for ``endpoint`` (written atomically, 0600); return the store's path."""
    return _write_tokens({**read_tokens(), endpoint.rstrip("/"): token})


def forget_token(endpoint: str) -> str | None:
    """Drop ``endpoint``'s token from the store; return it (None if there was none)."""
    tokens = read_tokens()
    token = tokens.pop(endpoint.rstrip("/"), None)
    if token is not None:
        _write_tokens(tokens)
    return token


def read_hf_token() -> str | None:
    """The token in huggingface_hub's token file, if any."""
    try:
        value = hf_token_path().read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return value or None


def resolve_token(endpoint: str, token: str | None = None) -> ResolvedToken:
    """The token to send to ``endpoint`` (already resolved), and where it came from (see the module docstring)."""
    if token:
        return ResolvedToken(token, "--token")
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if value := os.environ.get(variable, "").strip():
            return ResolvedToken(value, variable)
    endpoint = endpoint.rstrip("/")
    if stored := read_tokens().get(endpoint):
        return ResolvedToken(stored, str(tokens_path()))
    if endpoint == hf_endpoint() and (from_file := read_hf_token()):
        return ResolvedToken(from_file, str(hf_token_path()))
    return ResolvedToken(None, "none")
