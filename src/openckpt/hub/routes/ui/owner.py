"""The owner's pages of a repo's files: create a repo (``/new``), upload files (``/{repo}/upload/{rev}``, a multipart
form streamed to the store), edit or create a text file (``/{repo}/edit/{rev}/{path}``) and delete a file
(``/{repo}/delete/{rev}/{path}``), each with a commit message. Forms carry a CSRF token and the commit they were
shown at; commits go through :mod:`openckpt.hub.services.commit_flow` (uploads streamed into the store, scan gate,
license policy, compare-and-swap, events), as API commits do.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from openckpt.errors import BadRequestError, EntryNotFoundError, UnauthorizedError
from openckpt.hub.context import Hub, hub_of, raw_tail, repo_id_of
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Repo
from openckpt.hub.deps import HubDep
from openckpt.hub.routes.ui.common import PageRoute, csrf_token, page, repo_url, signed_in_form, viewer_of
from openckpt.hub.routes.ui.repo import _header
from openckpt.hub.services import commit_flow, pages, people, repos
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.commit_flow import NewFile
from openckpt.hub.services.commits import FileChange, resolve_revision
from openckpt.hub.services.names import check_new_path, check_path
from openckpt.hub.services.trees import file_at
from openckpt.hub.services.webhooks.delivery import Deliveries

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PURPOSE = "repo-files"
MAX_EDIT = 1_000_000
MAX_UPLOAD_FILES = 1000


def _signed_in(request: Request) -> Principal | Response:
    viewer = viewer_of(request)
    if viewer is None:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return viewer


def _writable(session: Session, viewer: Principal, request: Request, repo_type: str) -> Repo:
    owner, name = request.path_params["owner"], request.path_params["name"]
    return repos.find_repo(session, viewer, repo_type=repo_type, repo_id=repo_id_of(owner, name), write=True)


def _rev_and_path(request: Request, repo_type: str) -> tuple[str, str]:
    tail = raw_tail(request, 4 if repo_type == "dataset" else 3)
    rev = tail[0] if tail and tail[0] else repos.DEFAULT_BRANCH
    return rev, "/".join(p for p in tail[1:] if p)


def _title(form_value: object, default: str) -> str:
    return (str(form_value or "").strip() or default)[:200]


# ---- a new repo -------------------------------------------------------------------------------------------------


def _new_page(
    request: Request,
    db: Database,
    viewer: Principal,
    *,
    error: str = "",
    status: int = 200,
    values: dict[str, Any] | None = None,
) -> Response:
    context = {
        "namespaces": people.writable_namespaces(db, viewer),
        "csrf": csrf_token(request, "new-repo"),
        "error": error,
        "values": values or {},
    }
    return page(request, "repo_new.html", context, status=status)


@router.get("/new")
def new_repo_form(request: Request, hub: HubDep) -> Response:
    viewer = _signed_in(request)
    if isinstance(viewer, Response):
        return viewer
    return _new_page(request, hub.db, viewer, values={"owner": request.query_params.get("owner", "")})


@router.post("/new")
async def new_repo(request: Request, hub: HubDep) -> Response:
    viewer, form = await signed_in_form(request, "new-repo")
    values = {k: str(form.get(k) or "") for k in ("owner", "name", "type", "private")}
    repo_type = values["type"] if values["type"] in ("model", "dataset") else "model"
    try:
        repo = await run_in_threadpool(
            repos.create_repo,
            hub.db,
            hub.store,
            principal=viewer,
            repo_type=repo_type,
            name=values["name"].strip(),
            owner=values["owner"] or None,
            private=values["private"] == "on",
        )
    except (BadRequestError, ValueError) as e:
        return _new_page(request, hub.db, viewer, error=str(e), status=400, values=values)
    return RedirectResponse(repo_url(repo), status_code=303)


# ---- files: upload, edit, delete ------------------------------------------------------------------------------


async def _commit(
    request: Request,
    viewer: Principal,
    repo: Repo,
    branch: str,
    changes: list[FileChange | NewFile],
    *,
    title: str,
    message: str,
    parent: str | None,
) -> str:
    """Commit ``changes`` through the commit flow; the repo's webhooks hear of it. Returns the commit id."""
    hub = hub_of(request)
    deliveries: Deliveries | None = getattr(request.app.state, "webhooks", None)
    commit = commit_flow.CommitRequest(
        principal=viewer,
        repo_id=repo.id,
        revision=branch,
        changes=changes,
        title=title,
        message=message,
        parent_commit=parent,
    )
    flow = partial(commit_flow.commit, settings=hub.settings, request=commit, events=deliveries)
    return (await run_in_threadpool(flow, hub.db, hub.store)).commit_id


async def _committed(
    request: Request,
    viewer: Principal,
    repo: Repo,
    branch: str,
    changes: list[FileChange | NewFile],
    form: FormData,
    default_title: str,
    *,
    parent: str | None,
) -> Response:
    """Commit a form's ``changes`` with its title (``default_title`` if blank) and message; show the commit."""
    title, message = _title(form.get("title"), default_title), str(form.get("message") or "")
    commit_id = await _commit(request, viewer, repo, branch, changes, title=title, message=message, parent=parent)
    return RedirectResponse(f"{repo_url(repo)}/commit/{commit_id}", status_code=303)


def upload_form(request: Request, hub: Hub, repo_type: str) -> Response:
    viewer = _signed_in(request)
    if isinstance(viewer, Response):
        return viewer
    rev, folder = _rev_and_path(request, repo_type)
    with hub.db.read() as session:
        repo = _writable(session, viewer, request, repo_type)
        commit = resolve_revision(session, repo, rev=rev)
        base = repo_url(repo)
        context = {
            **_header(session, repo, rev, commit, "files", lambda r: f"{base}/upload/{quote(r, safe='')}"),
            "folder": folder,
            "csrf": csrf_token(request, PURPOSE),
        }
        return page(request, "repo_upload.html", context)


async def upload(request: Request, hub: Hub, repo_type: str) -> Response:
    form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=50)
    viewer, _ = await signed_in_form(request, PURPOSE)
    rev, _ = _rev_and_path(request, repo_type)
    with hub.db.read() as session:
        repo = _writable(session, viewer, request, repo_type)
    folder = str(form.get("folder") or "").strip().strip("/")
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    if not files:
        raise BadRequestError("choose at least one file to upload")
    changes: list[FileChange | NewFile] = []
    for item in files:
        assert item.filename is not None
        changes.append(NewFile(f"{folder}/{item.filename}" if folder else item.filename, item.file))
    names = ", ".join(c.path for c in changes[:3]) + (" and more" if len(changes) > 3 else "")
    return await _committed(request, viewer, repo, rev, changes, form, f"Upload {names}", parent=None)


def edit_form(request: Request, hub: Hub, repo_type: str) -> Response:
    viewer = _signed_in(request)
    if isinstance(viewer, Response):
        return viewer
    rev, path = _rev_and_path(request, repo_type)
    with hub.db.read() as session:
        repo = _writable(session, viewer, request, repo_type)
        commit = resolve_revision(session, repo, rev=rev)
        entry = file_at(session, commit.tree_id, path=path) if path else None
        text = ""
        if entry is not None:
            found = pages.read_text(hub.store, entry, limit=MAX_EDIT)
            if found is None:
                raise BadRequestError(
                    f"{path} is not a text file of at most {MAX_EDIT // 1_000_000} MB: it cannot be edited here"
                )
            text = found
        base = repo_url(repo)
        link = lambda r: f"{base}/edit/{quote(r, safe='')}/{quote(path)}"  # noqa: E731
        context = {
            **_header(session, repo, rev, commit, "files", link),
            "path": path,
            "text": text,
            "exists": entry is not None,
            "csrf": csrf_token(request, PURPOSE),
        }
        return page(request, "repo_edit.html", context)


async def edit(request: Request, hub: Hub, repo_type: str) -> Response:
    viewer, form = await signed_in_form(request, PURPOSE)
    rev, old_path = _rev_and_path(request, repo_type)
    path = check_new_path(str(form.get("path") or old_path).strip().strip("/"))
    content = str(form.get("content") or "").replace("\r\n", "\n").encode()
    if len(content) > MAX_EDIT:
        raise BadRequestError(f"the text is larger than {MAX_EDIT // 1_000_000} MB: upload it as a file instead")
    parent = str(form.get("parent") or "") or None
    with hub.db.read() as session:
        repo = _writable(session, viewer, request, repo_type)
    changes: list[FileChange | NewFile] = [NewFile(path, content)]
    if old_path and old_path != path:
        changes.append(FileChange(check_path(old_path), "delete"))
    return await _committed(request, viewer, repo, rev, changes, form, f"Update {path}", parent=parent)


def delete_form(request: Request, hub: Hub, repo_type: str) -> Response:
    viewer = _signed_in(request)
    if isinstance(viewer, Response):
        return viewer
    rev, path = _rev_and_path(request, repo_type)
    with hub.db.read() as session:
        repo = _writable(session, viewer, request, repo_type)
        commit = resolve_revision(session, repo, rev=rev)
        if file_at(session, commit.tree_id, path=path) is None:
            raise EntryNotFoundError(f"no file {path!r} at {rev}")
        base = repo_url(repo)
        link = lambda r: f"{base}/delete/{quote(r, safe='')}/{quote(path)}"  # noqa: E731
        context = {
            **_header(session, repo, rev, commit, "files", link),
            "path": path,
            "csrf": csrf_token(request, PURPOSE),
        }
        return page(request, "repo_delete_file.html", context)


async def delete(request: Request, hub: Hub, repo_type: str) -> Response:
    viewer, form = await signed_in_form(request, PURPOSE)
    rev, path = _rev_and_path(request, repo_type)
    with hub.db.read() as session:
        repo = _writable(session, viewer, request, repo_type)
    changes: list[FileChange | NewFile] = [FileChange(check_path(path), "delete")]
    parent = str(form.get("parent") or "") or None
    return await _committed(request, viewer, repo, rev, changes, form, f"Delete {path}", parent=parent)


def _endpoint(
    view: Callable[[Request, Hub, str], Any], repo_type: str
) -> Callable[[Request, Hub], Awaitable[Response]]:
    async def endpoint(request: Request, hub: HubDep) -> Response:
        if viewer_of(request) is None and request.method == "POST":
            raise UnauthorizedError("sign in first")
        if inspect.iscoroutinefunction(view):
            result: Response = await view(request, hub, repo_type)
            return result
        return await run_in_threadpool(view, request, hub, repo_type)

    endpoint.__name__ = f"{view.__name__}_{repo_type}"
    return endpoint


_VIEWS: list[tuple[str, str, Callable[[Request, Hub, str], Any]]] = [
    ("/upload/{rest:path}", "GET", upload_form),
    ("/upload/{rest:path}", "POST", upload),
    ("/edit/{rest:path}", "GET", edit_form),
    ("/edit/{rest:path}", "POST", edit),
    ("/delete/{rest:path}", "GET", delete_form),
    ("/delete/{rest:path}", "POST", delete),
]
for _prefix, _type in (("/datasets", "dataset"), ("", "model")):
    for _suffix, _method, _view in _VIEWS:
        router.add_api_route(f"{_prefix}/{{owner}}/{{name}}{_suffix}", _endpoint(_view, _type), methods=[_method])
