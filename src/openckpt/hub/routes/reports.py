"""``GET /api/{models|datasets}/{repo}/openness`` (MOF class, OSAID) and ``.../bom`` (CycloneDX 1.6 ML-BOM): kept out
of ``model_info`` so that it stays lean. Both describe metadata only, so gated repos answer them too."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from openckpt.hub.context import hub_of, optional_principal, repo_id_of, repo_type_of
from openckpt.hub.services import reports, repos

router = APIRouter()


@router.get("/api/{plural}/{owner}/{name}/openness")
def openness(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    with hub_of(request).db.read() as session:
        repo = repos.find_repo(
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        return reports.repo_openness(session, repo).to_dict()


@router.get("/api/{plural}/{owner}/{name}/bom")
def bom(request: Request, plural: str, owner: str, name: str) -> dict[str, Any]:
    from openckpt import __version__

    hub = hub_of(request)
    with hub.db.read() as session:
        repo = repos.find_repo(
            session, optional_principal(request, db=session), repo_type_of(plural), repo_id_of(owner, name)
        )
        return reports.repo_bom(session, hub.store, repo, tool_version=__version__)
