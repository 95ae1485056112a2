"""What changed and what a weights file holds: commit pages with text and tensor diffs, and a safetensors file's
tensor list (``/{repo}/tensors/{rev}/{path}``, paged). Included before ``ui_repo``, whose commit page this replaces.
``/{repo}/compare/...`` answers an HTML 404 page (discussions are ``ui_discussions``')."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from openckpt.errors import EntryNotFoundError
from openckpt.hub.context import Hub, raw_tail
from openckpt.hub.deps import HubDep
from openckpt.hub.routes.ui.common import PageRoute, error_page, page, page_number, repo_url, viewer_of
from openckpt.hub.routes.ui.repo import _header, _repo
from openckpt.hub.services import access, diffs, pages
from openckpt.hub.services.commits import commit_chain, resolve_revision
from openckpt.hub.services.trees import file_at

router = APIRouter(route_class=PageRoute, include_in_schema=False)

TENSORS_PAGE = 200


def one_commit(request: Request, hub: Hub, repo_type: str) -> Response:
    """A commit: its message, and every changed file with its text or tensor diff."""
    sha = request.path_params["sha"]
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        commit = resolve_revision(session, repo, rev=sha) if len(sha) == 40 else None
        if commit is None or commit.id != sha.lower():
            raise EntryNotFoundError(f"no commit {sha!r} in this repo")
        base = repo_url(repo)
        link = lambda r: f"{base}/commits/{quote(r, safe='')}"  # noqa: E731
        may_read = access.has_access(session, viewer_of(request), repo=repo)
        changes = diffs.commit_diffs(session, hub.store, commit=commit) if may_read else []
        context = {
            **_header(session, repo, commit.id, commit, "commits", link),
            "diffs": changes,
            "gated_out": not may_read,
        }
        return page(request, "repo_commit_diff.html", context)


def tensors(request: Request, hub: Hub, repo_type: str) -> Response:
    """The tensors of a safetensors file, from its header: name, dtype, shape, parameters; paged."""
    tail = raw_tail(request, 4 if repo_type == "dataset" else 3)
    rev = tail[0] if tail and tail[0] else ""
    path = "/".join(p for p in tail[1:] if p)
    number = page_number(request.query_params.get("p"))
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        rev = rev or repo.default_branch
        commit = resolve_revision(session, repo, rev=rev)
        entry = file_at(session, commit.tree_id, path=path)
        if entry is None or not path.endswith(".safetensors"):
            raise EntryNotFoundError(f"no safetensors file {path!r} at {rev}")
        access.check_download(session, viewer_of(request), repo=repo, path=path)
        header = diffs.read_safetensors_header(hub.store, entry)
        base = repo_url(repo)
        link = lambda r: f"{base}/tensors/{quote(r, safe='')}/{quote(path)}"  # noqa: E731
        infos = list(header.values()) if header is not None else []
        params, by_dtype = diffs.dtype_summary(infos)
        start = (number - 1) * TENSORS_PAGE
        context = {
            **_header(session, repo, rev, commit, "files", link),
            "entry": entry,
            "path": path,
            "readable": header is not None,
            "tensors": infos[start : start + TENSORS_PAGE],
            "total": len(infos),
            "params": params,
            "by_dtype": by_dtype,
            "number": number,
            "more": start + TENSORS_PAGE < len(infos),
        }
        return page(request, "repo_tensors.html", context)


def _endpoint(view: Callable[[Request, Hub, str], Response], repo_type: str) -> Callable[[Request, Hub], Response]:
    def endpoint(request: Request, hub: HubDep) -> Response:
        return view(request, hub, repo_type)

    endpoint.__name__ = f"{view.__name__}_{repo_type}"
    return endpoint


for _prefix, _type in (("/datasets", "dataset"), ("", "model")):
    router.add_api_route(f"{_prefix}/{{owner}}/{{name}}/commit/{{sha}}", _endpoint(one_commit, _type), methods=["GET"])
    router.add_api_route(
        f"{_prefix}/{{owner}}/{{name}}/tensors/{{rest:path}}", _endpoint(tensors, _type), methods=["GET"]
    )


MAX_CHECKPOINT_WALK = 500


def checkpoint(request: Request, hub: Hub, repo_type: str) -> Response:
    """Redirect to the commit of the default branch's history that added the ``openckpt.json`` of checkpoint ``cid``
    (the "Resumed from" link of a manifest); looks at the last :data:`MAX_CHECKPOINT_WALK` commits."""
    wanted = request.path_params["cid"]
    with hub.db.read() as session:
        repo = _repo(session, request, repo_type)
        head = resolve_revision(session, repo, rev=repo.default_branch)
        found, seen = None, ""
        for commit in commit_chain(session, head, limit=MAX_CHECKPOINT_WALK):
            entry = file_at(session, commit.tree_id, path="openckpt.json")
            if entry is not None and entry.sha256 == seen and found is not None:
                found = commit.id  # the same manifest, older: it was added here or earlier
                continue
            if found is not None:
                break
            if entry is None or entry.sha256 == seen:
                continue
            seen = entry.sha256
            panel = pages.load_manifest(hub.store, entry)
            if panel.manifest is not None and panel.manifest.id == wanted:
                found = commit.id
        if found is None:
            raise EntryNotFoundError(f"no commit of {repo.default_branch} holds checkpoint {wanted!r}")
        return RedirectResponse(f"{repo_url(repo)}/commit/{found}", status_code=303)


def not_here(request: Request) -> Response:
    """Pages the Hub has and this hub has not (yet): compare; an HTML 404."""
    return error_page(request, 404, "Not on this hub", "Comparisons are not available.")


for _prefix in ("/datasets", ""):
    for _page in ("compare/{rest:path}",):
        router.add_api_route(f"{_prefix}/{{owner}}/{{name}}/{_page}", not_here, methods=["GET"])
for _prefix, _type in (("/datasets", "dataset"), ("", "model")):
    router.add_api_route(
        f"{_prefix}/{{owner}}/{{name}}/checkpoint/{{cid}}", _endpoint(checkpoint, _type), methods=["GET"]
    )
