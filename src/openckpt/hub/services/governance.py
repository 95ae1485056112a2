"""Governance on the hub: the model tree (lineage edges), license reports, and license policies enforced on commit.

Lineage edges of a repo are those of its default branch's head, refreshed with its card data after each commit to
it; they give descendants and farther ancestors, while a revision's own bases are read from its files. A report
checks a revision's license against its ancestors': local ancestors (followed through their own edges) give the
license of their card; bases on other hubs are unknown unless the child's card states them in
``base_model_license``. A policy is the server's (``OPENCKPT_POLICY_FILE``) combined with the repo owner's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, joinedload

from openckpt.errors import BadRequestError, ForbiddenError, PolicyViolationError
from openckpt.governance.compat import Ancestor, Report, check
from openckpt.governance.lineage import Edge, card_metadata, extract_edges
from openckpt.governance.policy import Policy, combine, evaluate, parse_policy
from openckpt.governance.subject import is_relevant, subject_from_files
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Commit, LicensePolicy, LineageEdge, Repo, utcnow
from openckpt.hub.services import redirects
from openckpt.hub.services.accounts import Principal, may_read
from openckpt.hub.services.commits import FileChange, resolve_revision
from openckpt.hub.services.server_policy import server_policy
from openckpt.hub.services.tree_writes import apply_changes, write_tree
from openckpt.hub.services.trees import FileEntry, read_tree
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = [
    "ancestors",
    "descendants",
    "enforce_policy",
    "get_policy",
    "license_report",
    "local_repo",
    "model_tree",
    "policy_refusal",
    "refresh_lineage",
    "revision_lineage",
    "set_policy",
]

MAX_FILE = 1 << 20
MAX_DEPTH = 16


def _files(store: BlobStore, entries: Mapping[str, FileEntry], link: str | None = None) -> dict[str, bytes]:
    """Contents of the files a license check reads (small ones only)."""
    wanted = [p for p in entries if is_relevant(p) or p == link]
    return {p: b"".join(store.read(entries[p].sha256)) for p in wanted if entries[p].size <= MAX_FILE}


def local_repo(session: Session, base: str) -> Repo | None:
    """The model repo of this hub that a lineage ``base`` (``owner/name``) names, if any."""
    owner, sep, name = base.partition("/")
    if not sep or "/" in name or ":" in owner:
        return None
    repo = session.scalar(
        select(Repo)
        .join(Account, Repo.owner_id == Account.id)
        .where(Repo.type == "model", Account.name == owner, Repo.name == name)
        .options(joinedload(Repo.owner))
    )
    return repo if repo is not None else redirects.follow(session, "model", owner, name)  # a base renamed since


def refresh_lineage(
    session: Session, store: BlobStore, repo: Repo, head: Commit, entries: Mapping[str, FileEntry]
) -> None:
    """Replace the repo's lineage edges with those of ``head`` (its default branch's head)."""
    edges = extract_edges(_files(store, entries), paths=list(entries)) if repo.type == "model" else []
    session.execute(delete(LineageEdge).where(LineageEdge.repo_id == repo.id))
    for e in edges:
        local = local_repo(session, e.base)
        session.add(
            LineageEdge(
                repo_id=repo.id,
                base=e.base[:512],
                revision=head.id,
                base_repo_id=local.id if local is not None and local.id != repo.id else None,
                base_revision=e.revision,
                relation=e.relation,
                source=e.source,
            )
        )


def _has_notice(session: Session, repo: Repo) -> bool | None:
    try:
        head = resolve_revision(session, repo, rev=repo.default_branch)
    except Exception:
        return None
    return any(p.upper().startswith("NOTICE") for p in read_tree(session, head.tree_id, recursive=False))


def _stated(card: Mapping[str, Any], base: str) -> str | None:
    value = card.get("base_model_license")
    if isinstance(value, str):
        return value
    return str(value[base]) if isinstance(value, dict) and isinstance(value.get(base), str) else None


def _walk(
    session: Session, principal: Principal | None, edges: Sequence[Edge], card: Mapping[str, Any], via: str | None
) -> list[Ancestor]:
    """Ancestors reached from ``edges`` (of a child whose card is ``card``), through local repos' own edges."""
    out: list[Ancestor] = []
    seen: set[str] = set()
    queue: list[tuple[Edge, Mapping[str, Any], str | None, int]] = [(e, card, via, 1) for e in edges]
    while queue:
        edge, child_card, child, depth = queue.pop(0)
        if edge.base in seen or depth > MAX_DEPTH:
            continue
        seen.add(edge.base)
        repo = local_repo(session, edge.base)
        if repo is None or not may_read(principal, repo):
            out.append(Ancestor(edge.base, _stated(child_card, edge.base), edge.relation, False, depth, child))
            continue
        lic = repo.card_data.get("license") if isinstance(repo.card_data.get("license"), str) else None
        out.append(Ancestor(edge.base, lic, edge.relation, True, depth, child, _has_notice(session, repo)))
        rows = session.scalars(select(LineageEdge).where(LineageEdge.repo_id == repo.id))
        queue += [
            (Edge(r.base, r.relation, r.base_revision, r.source), repo.card_data, edge.base, depth + 1) for r in rows
        ]
    return out


def ancestors(session: Session, principal: Principal | None, repo: Repo) -> list[Ancestor]:
    """The ancestors of the repo's default branch head, nearest first."""
    rows = session.scalars(select(LineageEdge).where(LineageEdge.repo_id == repo.id).order_by(LineageEdge.base))
    edges = [Edge(r.base, r.relation, r.base_revision, r.source) for r in rows]
    return _walk(session, principal, edges, repo.card_data, None)


def revision_lineage(
    session: Session, store: BlobStore, *, principal: Principal | None, repo: Repo, rev: str
) -> tuple[Commit, dict[str, Any], list[Ancestor]]:
    """(the commit ``rev`` resolves to, its card's metadata, its ancestors nearest first): the repo's own bases come
    from that revision's card, openckpt.json and adapter_config.json; farther ones from local bases' current edges."""
    commit = resolve_revision(session, repo, rev=rev)
    entries = read_tree(session, commit.tree_id)
    files = _files(store, entries)
    readme = files.get("README.md")
    card = card_metadata(readme.decode("utf-8", "replace")) if readme is not None else {}
    edges = sorted(extract_edges(files, paths=list(entries)), key=lambda e: e.base)
    return commit, card, _walk(session, principal, edges, card, None)


def descendants(session: Session, principal: Principal | None, *, repo: Repo) -> list[dict[str, Any]]:
    """Local models derived from ``repo``, directly or not: fine-tunes, adapters, quantizations, merges."""
    out: list[dict[str, Any]] = []
    seen = {repo.id}
    queue: list[tuple[Repo, int]] = [(repo, 1)]
    while queue:
        parent, depth = queue.pop(0)
        rows = session.scalars(
            select(LineageEdge).where(or_(LineageEdge.base_repo_id == parent.id, LineageEdge.base == parent.repo_id))
        )
        for row in rows:
            child = session.get(Repo, row.repo_id)
            if child is None or child.id in seen or not may_read(principal, child) or depth > MAX_DEPTH:
                continue
            seen.add(child.id)
            lic = child.card_data.get("license")
            out.append(
                {
                    "id": child.repo_id,
                    "relation": row.relation,
                    "license": lic if isinstance(lic, str) else None,
                    "local": True,
                    "depth": depth,
                    "via": parent.repo_id,
                }
            )
            queue.append((child, depth + 1))
    return out


def _report(
    session: Session, store: BlobStore, principal: Principal | None, repo: Repo, entries: Mapping[str, FileEntry]
) -> Report:
    readme = entries.get("README.md")
    link = None
    if readme is not None and readme.size <= MAX_FILE:
        link = card_metadata(b"".join(store.read(readme.sha256)).decode("utf-8", "replace")).get("license_link")
    subject = subject_from_files(
        repo.name, _files(store, entries, link if isinstance(link, str) else None), paths=list(entries)
    )
    card = {"base_model_license": dict(subject.base_licenses)}
    return check(subject, _walk(session, principal, subject.edges, card, None))


def license_report(
    session: Session,
    store: BlobStore,
    *,
    settings: Settings,
    principal: Principal | None,
    repo: Repo,
    rev: str,
    policy: Policy | None = None,
) -> dict[str, Any]:
    """The license check of a revision, with the findings of ``policy`` (default: the repo's effective policy)."""
    commit = resolve_revision(session, repo, rev=rev)
    entries = read_tree(session, commit.tree_id)
    report = _report(session, store, principal, repo, entries)
    rules = policy if policy is not None else effective_policy(session, settings, repo)
    if not rules.empty:
        gate_results = _gate_results(session, store, settings, repo, entries, commit.tree_id, rules)
        report = report.with_findings(evaluate(rules, report, **gate_results))
    return {**report.to_dict(), "repo": repo.repo_id, "revision": commit.id, "policy": rules.to_dict()}


# ---- policies -----------------------------------------------------------------------------------------------------


def effective_policy(session: Session, settings: Settings, repo: Repo) -> Policy:
    row = session.get(LicensePolicy, repo.owner_id)
    return combine(server_policy(settings), parse_policy(row.rules) if row is not None else Policy())


def get_policy(session: Session, org: str) -> dict[str, Any]:
    account = session.scalar(select(Account).where(Account.name == org))
    if account is None:
        raise BadRequestError(f"no account {org!r}")
    row = session.get(LicensePolicy, account.id)
    return parse_policy(row.rules if row is not None else None).to_dict()


def set_policy(db: Database, principal: Principal, org: str, rules: Any) -> dict[str, Any]:
    """Set an organisation's policy (its admins, or a hub admin); an empty mapping removes it."""
    policy = parse_policy(rules)
    with db.write() as session:
        account = session.scalar(select(Account).where(Account.name == org, Account.kind == "org"))
        if account is None:
            raise BadRequestError(f"no organisation {org!r}")
        if not principal.can_write or not (principal.is_admin or principal.orgs.get(account.id) == "admin"):
            raise ForbiddenError(f"only admins of {org} may set its license policy")
        row = session.get(LicensePolicy, account.id)
        if row is None:
            row = LicensePolicy(account_id=account.id, rules={}, updated_by=principal.name)
            session.add(row)
        row.rules, row.updated_by, row.updated_at = policy.to_dict(), principal.name, utcnow()
    return policy.to_dict()


def _gate_results(
    session: Session,
    store: BlobStore,
    settings: Settings,
    repo: Repo,
    entries: dict[str, FileEntry],
    tree_id: str,
    policy: Policy,
) -> dict[str, Any]:
    """What the scan gate and the signature check say about a tree, for the rules of ``policy`` that need them."""
    out: dict[str, Any] = {}
    if policy.require_clean_scan:
        from openckpt.hub.services import gate

        found = gate.statuses(session, settings, repo_id=repo.id, entries=entries.values())
        dirty = [s.message() for s in found.values() if not s.clean]
        out["scan_clean"] = not dirty
        out["scan_note"] = "; ".join(dirty[:5])
    if policy.require_signature:
        from openckpt.hub.services import signatures

        with tempfile.TemporaryDirectory(dir=settings.data_dir) as scratch:
            status = signatures.check_signature(
                session, store, repo=repo, entries=entries, tree_id=tree_id, scratch=Path(scratch)
            )
        out["signature_valid"] = status is not None and status.verified
        out["signature_note"] = "no signature file" if status is None else status.reason
    return out


def policy_refusal(
    session: Session, store: BlobStore, settings: Settings, repo: Repo, entries: dict[str, FileEntry], tree_id: str
) -> tuple[str, str] | None:
    """(whose policy, its reasons) when the license policy of the repo's owner or of the server refuses ``entries``
    (the tree ``tree_id``) as files of ``repo``; None when it lets them in or no policy applies."""
    if repo.type != "model":  # policies govern models
        return None
    policy = effective_policy(session, settings, repo)
    if policy.empty:
        return None
    report = _report(session, store, None, repo, entries)
    findings = evaluate(policy, report, **_gate_results(session, store, settings, repo, entries, tree_id, policy))
    if not findings:
        return None
    row = session.get(LicensePolicy, repo.owner_id)
    whose = [repo.owner.name] if row is not None and not parse_policy(row.rules).empty else []
    whose += ["this hub"] if not server_policy(settings).empty else []
    return " and ".join(whose), "; ".join(f.message for f in findings)


def enforce_policy(
    db: Database, store: BlobStore, *, settings: Settings, repo_id: int, branch: str, changes: Sequence[FileChange]
) -> None:
    """Refuse (:class:`PolicyViolationError`) a commit of ``changes`` on ``branch`` that the license policy of the
    repo's owner or of the server forbids; a no-op when neither has a policy."""
    with db.read() as session:
        repo = session.get(Repo, repo_id)
        if repo is None or repo.type != "model" or effective_policy(session, settings, repo).empty:
            return  # policies govern models
        base = resolve_revision(session, repo, rev=branch).tree_id
        entries = apply_changes(read_tree(session, base), changes)
        tree_id = write_tree(session, base, changes, store=False)
        refused = policy_refusal(session, store, settings, repo, entries, tree_id)
    if refused is not None:
        raise PolicyViolationError(f"the license policy of {refused[0]} refuses this commit: {refused[1]}")


def model_tree(session: Session, principal: Principal | None, *, repo: Repo) -> dict[str, Any] | None:
    """What the repo page's "Model tree" shows: ancestors (nearest first) and descendants; None when both are empty."""
    up = [a.to_dict() for a in ancestors(session, principal, repo)]
    down = descendants(session, principal, repo=repo)
    return {"ancestors": up, "descendants": down} if up or down else None
