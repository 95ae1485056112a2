"""The web page of a bucket (the URL ``create_bucket`` answers): ``/buckets/{owner}/{name}`` and
``/buckets/{owner}/{name}/tree/{folder}``, one folder at a time, a page of entries at a time (``?cursor=``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from openckpt.hub.deps import DbDep, ViewerDep
from openckpt.hub.routes.ui.common import page
from openckpt.hub.services.buckets import files as bucket_files
from openckpt.hub.services.buckets import registry as buckets

__all__ = ["router"]

router = APIRouter()


def _page(request: Request, db: DbDep, viewer: ViewerDep, bucket_id: str, folder: str) -> HTMLResponse:
    folder = folder.strip("/")
    with db.read() as session:
        bucket = buckets.find_bucket(session, bucket_id, principal=viewer)
        summary = buckets.summarize(session, [bucket])[0]
        entries, following = bucket_files.list_tree(
            session,
            bucket.id,
            prefix=f"{folder}/" if folder else "",
            recursive=False,
            cursor=request.query_params.get("cursor"),
        )
        context = {"bucket": bucket, "summary": summary, "folder": folder, "entries": entries, "following": following}
        return page(request, "bucket.html", context)


@router.get("/buckets/{owner}/{name}")
def bucket_page(request: Request, db: DbDep, viewer: ViewerDep, owner: str, name: str) -> HTMLResponse:
    """A bucket's top folder: its size, file count, folders and files."""
    return _page(request, db, viewer, f"{owner}/{name}", "")


@router.get("/buckets/{owner}/{name}/tree/{folder:path}")
def bucket_folder(request: Request, db: DbDep, viewer: ViewerDep, owner: str, name: str, folder: str) -> HTMLResponse:
    """A folder of a bucket."""
    return _page(request, db, viewer, f"{owner}/{name}", folder)
