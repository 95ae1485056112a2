"""A hub's license checks and model tree, through huggingface_hub's HTTP session."""

from __future__ import annotations

from typing import Any

from huggingface_hub import get_session
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status  # type: ignore[attr-defined]

from openckpt.client.config import resolve_endpoint
from openckpt.client.tokens import resolve_token

__all__ = ["license_report", "lineage"]


def _call(method: str, path: str, *, endpoint: str | None, token: str | None, **kwargs: Any) -> dict[str, Any]:
    base = resolve_endpoint(endpoint)
    headers = build_hf_headers(token=resolve_token(base, token).value or False)
    response = get_session().request(method, f"{base}{path}", headers=headers, **kwargs)
    hf_raise_for_status(response)
    result: dict[str, Any] = response.json()
    return result


def license_report(
    repo_id: str,
    *,
    revision: str | None = None,
    policy: dict[str, Any] | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """The hub's license check of a model revision; with ``policy``, that policy is applied instead of the owner's."""
    path = f"/api/models/{repo_id}/license"
    params = {"revision": revision} if revision else {}
    if policy is None:
        return _call("GET", path, endpoint=endpoint, token=token, params=params)
    return _call("POST", path, endpoint=endpoint, token=token, params=params, json={"policy": policy})


def lineage(
    repo_id: str, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """``{ancestors: [...], descendants: [...]}`` of a model revision (default main) on the hub."""
    params = {"revision": revision} if revision else {}
    return _call("GET", f"/api/models/{repo_id}/lineage", endpoint=endpoint, token=token, params=params)
