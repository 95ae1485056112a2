"""Governance API: a model's tree (ancestors, descendants), its provenance and license checks, and organisations'
license policies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from openckpt.errors import BadRequestError
from openckpt.governance.policy import parse_policy
from openckpt.hub.bodies import read_json
from openckpt.hub.context import hub_of, optional_principal, repo_id_of, require_principal
from openckpt.hub.services import governance, provenance, repos
from openckpt.hub.services.commits import resolve_revision

router = APIRouter()


@router.get("/api/models/{owner}/{name}/lineage")
def lineage(request: Request, owner: str, name: str) -> dict[str, Any]:
    """``{ancestors, descendants}``: each node with id, relation, license, local, depth and via (its child/parent).

    Ancestors are those of ``?revision=`` (branch, tag or commit; default main); descendants are local models whose
    main derives from this repo."""
    hub, principal = hub_of(request), optional_principal(request)
    rev = request.query_params.get("revision") or repos.DEFAULT_BRANCH
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, "model", repo_id_of(owner, name))
        commit, card, found = governance.revision_lineage(session, hub.store, principal, repo, rev)
        ancestors = [a.to_dict() for a in found]
        for a in ancestors:
            a.pop("has_notice", None)
        lic = card.get("license")
        return {
            "id": repo.repo_id,
            "revision": commit.id,
            "license": lic if isinstance(lic, str) else None,
            "ancestors": ancestors,
            "descendants": governance.descendants(session, principal, repo),
        }


def _provenance(request: Request, owner: str, name: str) -> dict[str, Any]:
    hub = hub_of(request)
    rev = request.query_params.get("revision") or repos.DEFAULT_BRANCH
    with hub.db.read() as session:
        repo = repos.find_repo(session, optional_principal(request), "model", repo_id_of(owner, name))
        repo_id, commit_id = repo.id, resolve_revision(session, repo, rev).id
    return provenance.verdict(hub.db, hub.store, hub.settings, repo_id, commit_id)


@router.get("/api/models/{owner}/{name}/provenance")
async def provenance_check(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Whether the weights of a revision (``?revision=``, default main) come from the bases it declares: the
    verdict of :func:`openckpt.governance.provenance.verify_lineage`, kept by commit (computed now if not yet)."""
    return await run_in_threadpool(_provenance, request, owner, name)


def _report(request: Request, owner: str, name: str, policy: Any) -> dict[str, Any]:
    hub, principal = hub_of(request), optional_principal(request)
    rev = request.query_params.get("revision") or repos.DEFAULT_BRANCH
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, "model", repo_id_of(owner, name))
        return governance.license_report(session, hub.store, hub.settings, principal, repo, rev, policy)


@router.get("/api/models/{owner}/{name}/license")
async def license_check(request: Request, owner: str, name: str) -> dict[str, Any]:
    """The license check of a revision (``?revision=``, default main) under the repo's effective policy."""
    return await run_in_threadpool(_report, request, owner, name, None)


@router.post("/api/models/{owner}/{name}/license")
async def license_check_with(request: Request, owner: str, name: str) -> dict[str, Any]:
    """The same check under the policy of the JSON body ``{policy: {...}}`` instead of the repo's."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequestError("expected JSON {policy: {...}}")
    return await run_in_threadpool(_report, request, owner, name, parse_policy(body.get("policy")))


@router.get("/api/organizations/{org}/policy")
def get_policy(request: Request, org: str) -> dict[str, Any]:
    with hub_of(request).db.read() as session:
        return governance.get_policy(session, org)


@router.put("/api/organizations/{org}/policy")
async def put_policy(request: Request, org: str) -> dict[str, Any]:
    """Set the organisation's license policy (its admins): the JSON body is the policy's rules."""
    principal = require_principal(request)
    rules = await read_json(request)
    return await run_in_threadpool(governance.set_policy, hub_of(request).db, principal, org, rules)
