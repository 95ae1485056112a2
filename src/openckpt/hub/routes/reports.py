"""``GET /api/{models|datasets}/{repo}/openness`` (MOF class, OSAID) and ``.../bom`` (CycloneDX 1.6 ML-BOM): kept out
of ``model_info`` so that it stays lean. Both describe metadata only, so gated repos answer them too."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from openckpt.hub.deps import DbDep, HubDep, PrincipalDep, RepoDep
from openckpt.hub.services import reports, repos

router = APIRouter()


@router.get("/api/{plural}/{owner}/{name}/openness")
def openness(db: DbDep, principal: PrincipalDep, repo_ref: RepoDep) -> dict[str, Any]:
    with db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id)
        return reports.repo_openness(session, repo).to_dict()


@router.get("/api/{plural}/{owner}/{name}/bom")
def bom(hub: HubDep, principal: PrincipalDep, repo_ref: RepoDep) -> dict[str, Any]:
    from openckpt import __version__

    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type=repo_ref.type, repo_id=repo_ref.id)
        return reports.repo_bom(session, hub.store, repo=repo, tool_version=__version__)
