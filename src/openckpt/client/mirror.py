"""A hub's mirror of other hubs, managed by its admins (``/api/admin/mirror``): list, fetch or refresh, evict."""

from __future__ import annotations

from typing import Any

from huggingface_hub import get_session
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status  # type: ignore[attr-defined]

from openckpt.client.api import hf_api

__all__ = ["mirror_add", "mirror_evict", "mirror_list"]

PLURALS = {"model": "models", "dataset": "datasets", "space": "spaces"}


def mirror_list(*, endpoint: str | None = None, token: str | None = None) -> list[dict[str, Any]]:
    """Every mirrored repo: ``{type, id, revisions: [{revision, commit, upstream, checked}]}``."""
    api = hf_api(endpoint, token)
    response = get_session().get(f"{api.endpoint}/api/admin/mirror", headers=build_hf_headers(token=api.token))
    hf_raise_for_status(response)
    found: list[dict[str, Any]] = response.json()
    return found


def mirror_add(
    repo_id: str,
    *,
    revision: str = "main",
    repo_type: str = "model",
    endpoint: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Fetch ``revision`` of upstream repo ``repo_id`` into the hub now (or check it against the upstream again)."""
    api = hf_api(endpoint, token)
    response = get_session().post(
        f"{api.endpoint}/api/admin/mirror",
        headers=build_hf_headers(token=api.token),
        json={"repo_id": repo_id, "repo_type": repo_type, "revision": revision},
        timeout=None,  # a first fetch downloads the whole revision
    )
    hf_raise_for_status(response)
    added: dict[str, Any] = response.json()
    return added


def mirror_evict(
    repo_id: str, *, repo_type: str = "model", endpoint: str | None = None, token: str | None = None
) -> None:
    """Delete the hub's copy of mirrored repo ``repo_id`` (its bytes go at the next storage collection)."""
    api = hf_api(endpoint, token)
    url = f"{api.endpoint}/api/admin/mirror/{PLURALS[repo_type]}/{repo_id}"
    hf_raise_for_status(get_session().delete(url, headers=build_hf_headers(token=api.token)))
