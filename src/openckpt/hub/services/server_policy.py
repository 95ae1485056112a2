"""The hub's own policy: ``OPENCKPT_POLICY_FILE`` (license rules and ``scan`` rules), read again when it changes."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from openckpt.governance.policy import Policy, load_policy
from openckpt.hub.settings import Settings

__all__ = ["server_policy"]


@functools.lru_cache(maxsize=4)
def _server_policy(path: str, mtime: float) -> Policy:
    return load_policy(Path(path))


def server_policy(settings: Settings) -> Policy:
    """The policy of ``settings.policy_file``; an empty one without a file."""
    if not settings.policy_file:
        return Policy()
    return _server_policy(settings.policy_file, os.stat(settings.policy_file).st_mtime)
