"""Governance reports of a repo on a hub: its openness (MOF class, OSAID) and its CycloneDX ML-BOM."""

from __future__ import annotations

from typing import Any, Literal

from huggingface_hub import get_session, hf_raise_for_status

from openckpt.client.api import hf_api

__all__ = ["fetch_report"]


def fetch_report(
    kind: Literal["openness", "bom"], repo_id: str, *, endpoint: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """GET ``/api/models/{repo_id}/{kind}`` of the hub, with the caller's token."""
    api = hf_api(endpoint, token)
    response = get_session().get(f"{api.endpoint}/api/models/{repo_id}/{kind}", headers=api._build_hf_headers())
    hf_raise_for_status(response)
    data: dict[str, Any] = response.json()
    return data
