"""Which hub the client talks to, and the small config file that remembers it after ``openckpt login``.

The endpoint is, in order: an explicit argument (``--endpoint``), ``HF_ENDPOINT``, the ``endpoint`` recorded in
the config file (``$OPENCKPT_CONFIG``, else ``$XDG_CONFIG_HOME/openckpt/config.json``, else
``~/.config/openckpt/config.json``), then :data:`DEFAULT_ENDPOINT`. This module is the only place on the client
side that reads those environment variables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from openckpt.errors import FormatError
from openckpt.fsutil import atomic_write

__all__ = ["DEFAULT_ENDPOINT", "config_path", "read_config", "resolve_endpoint", "update_config"]

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
"""Where ``scripts/serve`` and ``openckpt serve`` listen by default."""


def config_path() -> Path:
    """The config file's path (it need not exist)."""
    if explicit := os.environ.get("OPENCKPT_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "openckpt" / "config.json"


def read_config() -> dict[str, Any]:
    """The config file's object; empty if there is no file."""
    path = config_path()
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON: {e}", path=path) from e
    if not isinstance(data, dict):
        raise FormatError("config must be a JSON object", path=path)
    return data


def update_config(**values: Any) -> Path:
    """Set keys of the config file (written atomically; it holds no secret); return its path."""
    path = config_path()
    config = {**read_config(), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(config, indent=2).encode() + b"\n")
    return path


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub URL to use, without a trailing slash (see the module docstring for the order)."""
    chosen = endpoint or os.environ.get("HF_ENDPOINT") or read_config().get("endpoint") or DEFAULT_ENDPOINT
    return str(chosen).rstrip("/")
