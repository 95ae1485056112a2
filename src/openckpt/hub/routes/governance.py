"""Governance API: a model's tree (ancestors, descendants), its provenance and license checks, and organisations'
license policies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from openckpt.governance.policy import parse_policy
from openckpt.hub.bodies import JsonObject, read_json
from openckpt.hub.context import Hub
from openckpt.hub.deps import DbDep, HubDep, PrincipalDep, RepoIdDep, UserDep, json_body
from openckpt.hub.services import governance, provenance, repos
from openckpt.hub.services.accounts import Principal

router = APIRouter()


class PolicyBody(JsonObject):
    """A license check under another policy than the repo's: ``{policy: {...}}`` (``parse_policy`` checks it)."""

    expected = "expected JSON {policy: {...}}"
    policy: Any = None


def _revision(request: Request) -> str:
    return request.query_params.get("revision") or repos.DEFAULT_BRANCH


@router.get("/api/models/{owner}/{name}/lineage")
def lineage(request: Request, hub: HubDep, principal: PrincipalDep, repo_id: RepoIdDep) -> dict[str, Any]:
    """``{ancestors, descendants}``: each node with id, relation, license, local, depth and via (its child/parent).

    Ancestors are those of ``?revision=`` (branch, tag or commit; default main); descendants are local models whose
    main derives from this repo."""
    rev = _revision(request)
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type="model", repo_id=repo_id)
        commit, card, found = governance.revision_lineage(session, hub.store, principal=principal, repo=repo, rev=rev)
        ancestors = [a.to_dict() for a in found]
        for a in ancestors:
            a.pop("has_notice", None)
        lic = card.get("license")
        return {
            "id": repo.repo_id,
            "revision": commit.id,
            "license": lic if isinstance(lic, str) else None,
            "ancestors": ancestors,
            "descendants": governance.descendants(session, principal, repo=repo),
        }


@router.get("/api/models/{owner}/{name}/provenance")
async def provenance_check(
    request: Request, hub: HubDep, principal: PrincipalDep, repo_id: RepoIdDep
) -> dict[str, Any]:
    """Whether the weights of a revision (``?revision=``, default main) come from the bases it declares: the
    verdict of :func:`openckpt.governance.provenance.verify_lineage`, kept by commit (computed now if not yet)."""
    return await run_in_threadpool(
        provenance.revision_verdict,
        hub.db,
        hub.store,
        settings=hub.settings,
        principal=principal,
        repo_id=repo_id,
        rev=_revision(request),
    )


def _report(hub: Hub, principal: Principal | None, repo_id: str, rev: str, policy: Any) -> dict[str, Any]:
    with hub.db.read() as session:
        repo = repos.find_repo(session, principal, repo_type="model", repo_id=repo_id)
        return governance.license_report(
            session, hub.store, settings=hub.settings, principal=principal, repo=repo, rev=rev, policy=policy
        )


@router.get("/api/models/{owner}/{name}/license")
async def license_check(request: Request, hub: HubDep, principal: PrincipalDep, repo_id: RepoIdDep) -> dict[str, Any]:
    """The license check of a revision (``?revision=``, default main) under the repo's effective policy."""
    return await run_in_threadpool(_report, hub, principal, repo_id, _revision(request), None)


@router.post("/api/models/{owner}/{name}/license")
async def license_check_with(
    request: Request,
    body: Annotated[PolicyBody, Depends(json_body(PolicyBody))],
    hub: HubDep,
    principal: PrincipalDep,
    repo_id: RepoIdDep,
) -> dict[str, Any]:
    """The same check under the policy of the JSON body ``{policy: {...}}`` instead of the repo's."""
    policy = parse_policy(body.policy)
    return await run_in_threadpool(_report, hub, principal, repo_id, _revision(request), policy)


@router.get("/api/organizations/{org}/policy")
def get_policy(db: DbDep, org: str) -> dict[str, Any]:
    with db.read() as session:
        return governance.get_policy(session, org)


@router.put("/api/organizations/{org}/policy")
async def put_policy(request: Request, db: DbDep, principal: UserDep, org: str) -> dict[str, Any]:
    """Set the organisation's license policy (its admins): the JSON body is the policy's rules."""
    rules = await read_json(request)  # any JSON: the service says what does not fit
    return await run_in_threadpool(governance.set_policy, db, principal, org, rules)
