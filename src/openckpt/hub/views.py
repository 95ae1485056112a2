"""JSON shapes of the Hugging Face Hub API, built from the hub's rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from openckpt.digest import lfs_pointer
from openckpt.hub.db.models import Account, Commit, Repo
from openckpt.hub.services.gate import FileStatus
from openckpt.hub.services.people import Member, Overview
from openckpt.hub.services.trees import FileEntry, Folder

__all__ = [
    "commit_json",
    "directory_json",
    "file_json",
    "file_security_json",
    "iso",
    "last_commit_json",
    "member_json",
    "org_overview_json",
    "repo_json",
    "repo_security_json",
    "sibling_json",
    "user_overview_json",
]


def iso(moment: datetime) -> str:
    """``2026-11-24T06:55:10.000Z``, the Hub's timestamp format."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _lfs(entry: FileEntry, oid_key: str) -> dict[str, Any]:
    return {oid_key: entry.sha256, "size": entry.size, "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}


def sibling_json(entry: FileEntry, *, blobs: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"rfilename": entry.path}
    if blobs:
        item.update(size=entry.size, blobId=entry.git_oid)
        if entry.lfs:
            item["lfs"] = _lfs(entry, "sha256")
    return item


def file_json(entry: FileEntry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": entry.path}
    if entry.lfs:
        item["lfs"] = _lfs(entry, "oid")
    return item


def directory_json(folder: Folder) -> dict[str, Any]:
    """A directory; its oid is the id of its tree, a digest of what it contains (as git's tree id is)."""
    return {"type": "directory", "oid": folder.tree_id, "size": 0, "path": folder.path}


def last_commit_json(commit: Commit) -> dict[str, Any]:
    """The ``lastCommit`` of an expanded tree entry."""
    return {"id": commit.id, "title": commit.title, "date": iso(commit.created_at)}


def commit_json(commit: Commit) -> dict[str, Any]:
    return {
        "id": commit.id,
        "title": commit.title,
        "message": commit.message,
        "date": iso(commit.created_at),
        "authors": [{"user": commit.author}],
    }


def repo_json(
    repo: Repo,
    *,
    head: Commit | None = None,
    entries: list[FileEntry] | None = None,
    blobs: bool = False,
    card: bool = True,
) -> dict[str, Any]:
    """A repo as ``model_info`` / ``list_models`` return it."""
    data: dict[str, Any] = {
        "_id": str(repo.id),
        "id": repo.repo_id,
        "author": repo.owner.name,
        "private": repo.private,
        "gated": repo.gated or False,
        "disabled": False,
        "downloads": repo.downloads,
        "likes": repo.likes,
        "tags": list(repo.tags),
        "lastModified": iso(repo.last_modified),
        "createdAt": iso(repo.created_at),
        "xetEnabled": False,
        "defaultBranch": repo.default_branch,  # openckpt's: huggingface_hub keeps it as an attribute of the info
    }
    if repo.type == "model":
        data["modelId"] = repo.repo_id
        data["pipeline_tag"] = repo.pipeline_tag
        data["library_name"] = repo.library_name
    if card and repo.card_data:
        data["cardData"] = repo.card_data
    if head is not None:
        data["sha"] = head.id
        data["lastModified"] = iso(head.created_at)
    if entries is not None:
        data["siblings"] = [sibling_json(e, blobs=blobs) for e in entries]
        data["usedStorage"] = sum(e.size for e in entries)
    return data


# ---- users and organisations, as ``User`` and ``Organization`` of huggingface_hub parse them -----------------------


def _account_json(account: Account) -> dict[str, Any]:
    """What the Hub gives of every account; no avatars are hosted here, so ``avatarUrl`` is empty."""
    return {"fullname": account.fullname or account.name, "avatarUrl": "", "type": account.kind}


def _counts_json(found: Overview) -> dict[str, int]:
    return {f"num{kind.title()}s": found.repos.get(kind, 0) for kind in ("model", "dataset", "space")}


def user_overview_json(found: Overview) -> dict[str, Any]:
    """``get_user_overview``: the user, the repos the caller may see, and the user's organisations."""
    orgs = [{"name": o.name, **_account_json(o)} for o in found.orgs]
    return {
        "user": found.account.name,
        **_account_json(found.account),
        "isPro": False,
        **_counts_json(found),
        "numLikes": 0,
        "orgs": orgs,
        "createdAt": iso(found.account.created_at),
    }


def org_overview_json(found: Overview) -> dict[str, Any]:
    """``get_organization_overview``: the organisation, the repos the caller may see, and its number of members."""
    return {
        "name": found.account.name,
        **_account_json(found.account),
        **_counts_json(found),
        "numUsers": found.members,
        "isVerified": False,
        "isEnterprise": False,
    }


def member_json(member: Member) -> dict[str, Any]:
    """An item of ``list_organization_members``; ``role`` only when the caller may see it."""
    data: dict[str, Any] = {"user": member.user.name, **_account_json(member.user), "isPro": False}
    if member.role is not None:
        data["role"] = member.role
    return data


# ---- scan results, in the shapes huggingface_hub parses (RepoFile.security, ModelInfo.security_repo_status) ------


def _imports(status: FileStatus) -> list[dict[str, str]]:
    """The Hub's "Detected Pickle imports": what loading the file imports beyond its loader's allowlist
    (``suspicious``, as the Hub rates an import it does not know) and the callables of its findings."""
    found = {}
    for qualname in status.imports:
        module, _, name = qualname.rpartition(".")
        found[(module, name)] = {"module": module, "name": name, "safety": "suspicious"}
    for f in status.findings:
        if f.get("callable"):
            module, _, name = str(f["callable"]).rpartition(".")
            safety = {"malicious": "dangerous", "suspicious": "suspicious", "needs_code": "suspicious"}.get(
                str(f.get("severity")), "innocuous"
            )
            found.setdefault((module, name), {"module": module, "name": name, "safety": safety})
            if safety == "dangerous":
                found[(module, name)]["safety"] = safety
    return list(found.values())


_HUB_STATUS = {"clean": "safe", "opaque": "safe", "malicious": "unsafe", "unscanned": "unscanned"}
"""The Hub's ``status`` of a file by verdict; every other verdict is ``caution``."""


def _scan_json(status: FileStatus) -> dict[str, Any]:
    """openckpt's own account of a file: its verdict, what loading it needs, and whether downloads are withheld."""
    return {
        "verdict": status.verdict,
        "completeness": status.completeness,
        "imports": status.imports,
        "packages": status.packages,
        "released": status.released,
        "withheld": status.withheld,
        "withheldBecause": status.reason or None,
        "findings": status.findings,
    }


def file_security_json(status: FileStatus) -> dict[str, Any]:
    """``securityFileStatus`` of an expanded tree entry: the Hub's keys, and openckpt's verdict in ``openckptScan``."""
    imports = _imports(status)
    worst = "dangerous" if any(i["safety"] == "dangerous" for i in imports) else "suspicious"
    return {
        "status": _HUB_STATUS.get(status.verdict, "caution"),
        "avScan": {"virusFound": False, "virusNames": None},
        "pickleImportScan": {"highestSafetyLevel": worst, "imports": imports} if imports else None,
        "openckptScan": _scan_json(status),
    }


def repo_security_json(statuses: dict[str, FileStatus], policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """``securityRepoStatus`` of ``model_info(securityStatus=True)``: the Hub's ``scansDone`` and
    ``filesWithIssues`` (each file that is not clean or opaque, with its ``level``), and openckpt's ``files`` (every
    scanned file's verdict and packages) and ``policy`` (the scan rules that apply)."""
    issues = [
        {"path": s.path, "level": s.level, **_scan_json(s)}
        for s in statuses.values()
        if not s.runs_nothing and s.verdict != "unscanned"
    ]
    files = [
        {"path": s.path, "verdict": s.verdict, "packages": s.packages, "withheld": s.withheld}
        for s in statuses.values()
    ]
    data = {"scansDone": all(s.current for s in statuses.values()), "filesWithIssues": issues, "files": files}
    if policy is not None:
        data["policy"] = policy
    return data
