"""Fetch what a weight comparison needs from a hub: safetensors weights, configs and lineage files, nothing else.

Files go into huggingface_hub's cache (``HF_HOME``), so checking several derivatives of one base downloads it once.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download

from openckpt.client.api import hf_api, unreachable

__all__ = ["WEIGHT_PATTERNS", "fetch_weights", "why_unavailable"]

WEIGHT_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "README.md",
    "openckpt.json",
    "adapter_config.json",
]
"""What :func:`fetch_weights` downloads (``*`` crosses folders, so an openckpt checkpoint's shards come too)."""


def fetch_weights(
    repo_id: str, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None
) -> Path:
    """The local directory of ``repo_id`` at ``revision`` holding the files of :data:`WEIGHT_PATTERNS`."""
    api = hf_api(endpoint, token)
    local = snapshot_download(
        repo_id, revision=revision, allow_patterns=WEIGHT_PATTERNS, endpoint=api.endpoint, token=api.token
    )
    return Path(local)


def why_unavailable(error: BaseException) -> str | None:
    """Why a repo cannot be fetched, in a few words, if ``error`` says so (absent, private, gated, unreachable)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, GatedRepoError):
        return "the base is gated: request access to it first"
    if isinstance(error, RepositoryNotFoundError):
        return "the base is absent from the hub, or private"
    if isinstance(error, RevisionNotFoundError):
        return "the base has no such revision"
    if isinstance(error, HfHubHTTPError):
        status = getattr(error.response, "status_code", None)
        return f"the hub answered HTTP {status} for the base"
    message = unreachable(error)
    return None if message is None else f"the base is unreachable ({message})"
