"""Running the hub: migrations, the first admin account, and uvicorn with one or more worker processes."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from openckpt.errors import ConflictError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account
from openckpt.hub.services.accounts import create_account, create_token
from openckpt.hub.settings import Settings

__all__ = ["app_from_env", "bootstrap", "serve"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc ``mallopt`` parameters (malloc.h)."""
KEEP_FREE = 256 << 20
"""Freed heap memory a worker keeps for reuse instead of returning it to the kernel."""
MMAP_FROM = 32 << 20
"""Allocations from this size get their own mapping; smaller ones come from the heap."""


PRIVATE_UMASK = 0o077
"""What the hub creates (database, blobs, temporary files) is its own user's alone."""


def bootstrap(settings: Settings) -> str | None:
    """Apply migrations and settle the signing secret (``hub_secret``); on an empty database create the ``admin``
    user and return a new write token for it. From here on the process creates files for its own user only."""
    from openckpt.hub.services.hub_secret import settle_secret

    os.umask(PRIVATE_UMASK)
    db = Database(settings.database_url)
    try:
        db.migrate()
        settle_secret(db, settings)
        with db.write() as session:
            if session.scalar(select(func.count()).select_from(Account)):
                return None
            admin = create_account(session, "admin", fullname="Administrator", is_admin=True, reserved_ok=True)
            _, secret = create_token(session, admin, name="bootstrap", role="write")
            return secret
    except (SQLIntegrityError, ConflictError):
        return None  # another server starting on the same new database created the admin first
    finally:
        db.dispose()


def tune_malloc() -> bool:
    """Let glibc reuse freed memory rather than give it back and fault it in again; False where there is no glibc.

    A transfer allocates and frees a buffer for every piece it receives. With glibc's defaults most of those pieces
    are fresh pages (new mappings, or a heap trimmed and grown again), and faulting them in cost more than hashing
    the bytes: a bare uvicorn app took a 1 GB PUT in 1.0 s with the defaults, in 0.34 s with these settings, and the
    hub's downloads went from 0.64x to 0.87x nginx's rate (curl, bench/hub_transfer.py).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREE)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_FROM))


def app_from_env() -> FastAPI:
    """The factory each uvicorn worker calls; settings come from the ``OPENCKPT_*`` environment."""
    from openckpt.hub.app import create_app

    os.umask(PRIVATE_UMASK)
    tune_malloc()
    app = create_app(Settings.from_env())
    # What the app holds lives as long as the worker: frozen, the collector's full passes skip it. Each walked every
    # module, route and table of the app, about 0.45 CPU-s of the ~7 a 1 GB Xet upload cost the hub.
    gc.freeze()
    return app


def serve(settings: Settings, *, log_level: str = "info") -> None:
    """Serve until interrupted. Workers share the settings through the environment."""
    import uvicorn

    os.environ.update(
        OPENCKPT_DATA_DIR=str(settings.data_dir),
        OPENCKPT_DATABASE_URL=settings.database_url,
        OPENCKPT_PUBLIC_URL=settings.public_url,
        OPENCKPT_HOST=settings.host,
        OPENCKPT_PORT=str(settings.port),
        OPENCKPT_STORAGE_URL=settings.storage_url,
    )
    uvicorn.run(
        "openckpt.hub.server:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        timeout_keep_alive=30,
        http=_http_protocol(),
    )


def _http_protocol() -> str:
    """httptools with bounds on the request head (``openckpt.hub.http_protocol``); without httptools, uvicorn's h11,
    which bounds heads itself (16 KiB)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "auto"
    return "openckpt.hub.http_protocol:BoundedHttpToolsProtocol"
