"""Garbage collection on a schedule: every process of the hub wakes up every ``gc_interval`` seconds, and the one
that takes the schedule's lease (held for most of an interval) collects; the others go back to sleep."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from openckpt.errors import StorageBusyError
from openckpt.hub.db.engine import Database
from openckpt.hub.services.storage import leases
from openckpt.hub.services.storage.gc import collect
from openckpt.hub.settings import Settings
from openckpt.store.blobs import BlobStore

__all__ = ["SCHEDULE_LEASE", "start_schedule"]

log = logging.getLogger("openckpt.hub.gc")
SCHEDULE_LEASE = "storage-gc-schedule"


def start_schedule(db: Database, store: BlobStore, settings: Settings) -> threading.Event | None:
    """Start this process's scheduler thread (None if ``gc_interval`` is 0); set the returned event to stop it."""
    if settings.gc_interval <= 0:
        return None
    stop = threading.Event()
    holder = leases.holder_id()
    interval = settings.gc_interval

    def run() -> None:
        while not stop.wait(interval):
            try:
                if not leases.acquire(db, SCHEDULE_LEASE, holder, timedelta(seconds=interval * 0.9)):
                    continue  # another process collects this round
                report = collect(
                    db,
                    store,
                    grace=timedelta(seconds=settings.gc_grace),
                    url_ttl=timedelta(seconds=settings.signed_url_ttl),
                    multipart_dir=settings.data_dir / "multipart",
                )
                log.info("storage gc: %s", report.as_dict())
            except StorageBusyError as e:
                log.info("storage gc skipped: %s", e)
            except Exception:
                log.exception("storage gc failed")

    threading.Thread(target=run, name="openckpt-gc", daemon=True).start()
    return stop
