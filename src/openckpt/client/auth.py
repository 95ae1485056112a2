"""``login``: check a token against the hub, store it where huggingface_hub looks, remember the endpoint."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError

from openckpt.client.api import hf_api
from openckpt.client.config import update_config
from openckpt.errors import UnauthorizedError
from openckpt.fsutil import fsync_dir, temp_sibling

__all__ = ["LoginResult", "login"]


@dataclass(frozen=True)
class LoginResult:
    endpoint: str
    user: str
    role: str | None
    """The token's role as the hub reports it (``read`` or ``write``)."""
    token_path: Path
    config_path: Path


def _write_secret(path: Path, secret: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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
    _write_secret(token_path, token)
    config = update_config(endpoint=api.endpoint)
    role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
    return LoginResult(api.endpoint, str(info["name"]), role, token_path, config)
