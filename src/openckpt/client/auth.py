"""``login``: check a token against the hub, store it where huggingface_hub looks, remember the endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError

from openckpt.client.api import hf_api
from openckpt.client.config import update_config
from openckpt.errors import UnauthorizedError
from openckpt.fsutil import atomic_write

__all__ = ["LoginResult", "login"]


@dataclass(frozen=True)
class LoginResult:
    endpoint: str
    user: str
    role: str | None
    """The token's role as the hub reports it (``read`` or ``write``)."""
    token_path: Path
    config_path: Path


def login(token: str, *, endpoint: str | None = None) -> LoginResult:
    """Validate ``token`` with ``whoami`` at the hub, then make it the active token and the hub the default one.

    The token goes to huggingface_hub's token file (``$HF_HOME/token``), the file ``huggingface_hub.login``
    writes, so ``huggingface_hub``, ``transformers`` and the ``hf`` CLI use it too (with ``HF_ENDPOINT`` set to
    the hub). ``huggingface_hub.login`` itself is not called because it validates against the endpoint fixed
    when huggingface_hub was imported, not the one given here. The endpoint is recorded in openckpt's config.
    An ``HF_TOKEN`` variable still takes precedence over the file, as in huggingface_hub.
    """
    api = hf_api(endpoint, token)
    try:
        info = api.whoami()
    except HfHubHTTPError as e:
        if e.response is None or e.response.status_code != 401:
            raise
        raise UnauthorizedError(f"{api.endpoint} does not accept this token (401): nothing saved") from e
    token_path = Path(constants.HF_TOKEN_PATH)
    token_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(token_path, token.encode(), mode=0o600)
    config = update_config(endpoint=api.endpoint)
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    return LoginResult(api.endpoint, str(info["name"]), role, token_path, config)
