"""The ASGI application: routers, error mapping, and the hub's parts on ``app.state``."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from openckpt.hub import error_boundary
from openckpt.hub.context import Hub
from openckpt.hub.db.engine import Database
from openckpt.hub.error_response import error_response, status_code_name
from openckpt.hub.limits import Limits
from openckpt.hub.settings import Settings
from openckpt.store.url import open_store

__all__ = ["create_app"]

log = logging.getLogger("openckpt.hub")


_error = error_response


def create_app(settings: Settings | None = None, *, migrate: bool = False) -> FastAPI:
    """The hub app; settings default to ``OPENCKPT_*`` variables. ``migrate`` applies migrations first."""
    from openckpt.hub.routes import (
        access,
        admin,
        buckets,
        cas,
        collections,
        discussions,
        files,
        governance,
        lfs,
        lfs_files,
        likes,
        mirror,
        reports,
        repos,
        resolve,
        security,
        users,
        webhooks,
        xet,
    )
    from openckpt.hub.routes.ui import buckets as ui_buckets
    from openckpt.hub.routes.ui import community as ui_community
    from openckpt.hub.routes.ui import pages as ui
    from openckpt.hub.services import gate
    from openckpt.hub.services.hub_secret import settle_secret
    from openckpt.hub.services.sealed import seal_webhook_secrets, sealing_key
    from openckpt.hub.services.storage.schedule import start_schedule
    from openckpt.hub.services.stored_files import XetFileStore
    from openckpt.hub.services.webhooks.delivery import Deliveries

    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    if migrate:
        db.migrate()
    app = FastAPI(title="openckpt hub", docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None)
    settings = replace(settings, secret=settle_secret(db, settings))  # transfer URLs, Xet and form tokens
    app.state.hub = Hub(settings, db, open_store(settings.storage_url, settings.data_dir))
    app.state.hub.store = XetFileStore(app.state.hub.store, db)  # files uploaded by Xet read like blobs
    public_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    key = sealing_key(settings.secret)
    seal_webhook_secrets(db, key)  # those older hubs stored in plaintext
    app.state.webhooks = Deliveries(db, public_url, key=key, allow_local=settings.webhooks_allow_local)
    # webhooks and users before repos: /api/settings/webhooks/{id}, /api/users/{name}/overview and
    # /api/organizations/{org}/members would otherwise reach the repos routes /api/{plural}/{owner}/{name}
    app.include_router(mirror.router)  # /api/admin/mirror: the mirror's admin API
    app.include_router(buckets.router)  # before repos: /api/buckets/{owner}/{name}, /buckets/{owner}/{name}/resolve
    app.include_router(likes.router)  # before repos: /api/{plural}/{owner}/{name}/like, /api/users/{user}/likes
    app.include_router(collections.router)  # before repos: /api/collections/{owner}/{slug}
    app.include_router(discussions.router)  # before repos: /api/{plural}/{owner}/{name}/discussions
    for module in (webhooks, users, access, reports, repos, files, lfs_files, lfs, resolve, security, governance):
        app.include_router(module.router)
    for module in (xet, cas):  # Xet: token routes, and the CAS under /cas
        app.include_router(module.router)
    app.include_router(admin.router)  # storage accounting: API, and /admin pages before the UI's /{owner}/{name}
    app.include_router(admin.pages)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.include_router(ui_community.router)  # like forms and /collections/... before the UI's /{owner}/{name}
    app.include_router(ui_buckets.router)  # /buckets/{owner}/{name}: before the UI's /{owner}/{name}/...
    app.include_router(ui.router)  # last: its /{owner}/{name} and /{name} pages must not shadow the API
    if settings.upstreams():  # reads of repos this hub lacks are fetched from the upstreams first
        settings.upstream_credential()  # an unreadable or shared token file: fail at start, not on each read
        app.add_middleware(mirror.MirrorReads)
    app.add_middleware(
        Limits,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        body_timeout=settings.body_timeout,
        max_form_bytes=settings.max_json_bytes,
    )

    error_boundary.install(app)  # HubError and library errors; a 500 with a request id for anything else

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        """Starlette's own refusals (no such route, a method not allowed, a form field over 1 MB) in the Hub's shape."""
        return _error(exc.status_code, status_code_name(exc.status_code), str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "BadRequest", f"invalid request: {exc.errors()}")

    @app.on_event("startup")
    def _monitor() -> None:  # trust: rescan stored files whose scan predates the current rules
        app.state.rescan = gate.start_monitor(db, app.state.hub.store, settings)
        app.state.gc = start_schedule(db, app.state.hub.store, app.state.hub.settings)  # storage gc, one process

    @app.on_event("startup")
    async def _threads() -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        app.state.webhooks.start()  # deliveries a previous run left in the outbox

    @app.on_event("shutdown")
    def _close() -> None:
        if getattr(app.state, "rescan", None) is not None:
            app.state.rescan.set()
        if getattr(app.state, "gc", None) is not None:
            app.state.gc.set()
        app.state.webhooks.stop()
        db.dispose()

    return app
