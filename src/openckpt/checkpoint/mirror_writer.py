"""Uploading a manager's committed checkpoints to its mirror on a worker thread, ``LATEST`` last.

For each checkpoint the worker waits for its seal (the files' sha256s, which a hub names files by), uploads every
file of it, and only then replaces the mirror's ``LATEST``: a reader of the mirror sees a checkpoint once all of it
is there. Then it deletes from the mirror the checkpoints that retention deleted locally, never the one the mirror's
``LATEST`` names.

The queue holds one checkpoint besides the one uploading: a newer save replaces a waiting one (with a warning), so
the training loop never waits for the network. Checkpoints waiting or uploading are :meth:`MirrorWriter.busy`, and
the manager's retention leaves them alone until they are sent. A failure is kept and raised as
:class:`~openckpt.errors.MirrorError` by the manager's next call (save, wait, close); later checkpoints are still
uploaded. The interpreter flushes the queue at exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path

from openckpt.checkpoint.mirror import LATEST, Mirror, checkpoint_files
from openckpt.checkpoint.seal import seal
from openckpt.errors import MirrorError

__all__ = ["MirrorWriter"]

log = logging.getLogger("openckpt")


class MirrorWriter:
    """The worker that copies the committed checkpoints of ``directory`` to ``mirror``."""

    def __init__(self, mirror: Mirror, directory: Path) -> None:
        self.mirror, self.directory = mirror, directory
        self._cond = threading.Condition()
        self._waiting: str | None = None
        self._current: str | None = None
        self._forgotten: set[str] = set()
        self._published: str | None = None
        self._sent_outside: set[str] = set()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._skip_level = logging.WARNING
        atexit.register(_flush_at_exit, weakref.ref(self))

    def submit(self, name: str) -> None:
        """Queue the committed checkpoint ``directory / name`` for upload."""
        with self._cond:
            self._closed = False  # a save after close() starts the worker again
            if self._waiting is not None:  # warned once a run: saving every step, most are skipped
                level, self._skip_level = self._skip_level, logging.INFO
                log.log(
                    level,
                    "openckpt: %s is not mirrored: %s replaced it while %s uploads to %s (saves outpace uploads)",
                    self._waiting,
                    name,
                    self._current,
                    self.mirror.url,
                )
            self._waiting = name
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="openckpt-mirror", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def forget(self, names: Iterable[str]) -> None:
        """Delete these checkpoints (removed locally) from the mirror after the next upload."""
        with self._cond:
            self._forgotten.update(names)

    def busy(self) -> set[str]:
        """Checkpoints waiting or uploading: local retention must keep them until they are sent."""
        with self._cond:
            return {n for n in (self._waiting, self._current) if n is not None}

    def raise_failure(self) -> None:
        """Raise the failure of an earlier upload, once."""
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise MirrorError(f"mirroring to {self.mirror.url} failed: {error}", path=self.directory) from error

    def flush(self) -> None:
        """Block until every queued checkpoint is uploaded; raise an upload's failure."""
        with self._cond:
            while self._waiting is not None or self._current is not None:
                self._cond.wait()
        self.raise_failure()

    def close(self) -> None:
        """Flush, then stop the worker."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()
                self._thread = None

    def _flush_quietly(self) -> None:
        try:
            self.close()
        except Exception:
            log.exception("openckpt: mirroring to %s failed", self.mirror.url)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._waiting is None and not self._closed:
                    self._cond.wait()
                if self._waiting is None:
                    return
                self._current, self._waiting = self._waiting, None
            try:
                self._upload(self._current)
                self._delete_forgotten()
            except BaseException as e:  # kept for the manager's next call
                log.warning("openckpt: mirroring %s to %s failed: %s", self._current, self.mirror.url, e)
                with self._cond:
                    self._error = e
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _upload(self, name: str) -> None:
        started = time.monotonic()
        manifest = seal(self.directory / name)  # the sealed manifest goes up, with the sha256s a hub names files by
        files = checkpoint_files(self.directory, name, manifest)
        files = {n: p for n, p in files.items() if n.startswith(f"{name}/") or n not in self._sent_outside}
        self.mirror.put(dict(files))
        self.mirror.put({LATEST: f"{name}\n".encode()})
        self._sent_outside.update(n for n in files if not n.startswith(f"{name}/"))
        with self._cond:
            self._published = name
        size = sum(p.stat().st_size for p in files.values())
        log.info(
            "openckpt: mirrored %s to %s: %d files, %.1f MB in %.1f s",
            name,
            self.mirror.url,
            len(files),
            size / 1e6,
            time.monotonic() - started,
        )

    def _delete_forgotten(self) -> None:
        with self._cond:
            names = self._forgotten - {self._published}
            self._forgotten -= names
        doomed = [f for name in sorted(names) for f in self.mirror.list(name)]
        if doomed:
            self.mirror.delete(doomed)


def _flush_at_exit(ref: weakref.ref[MirrorWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._flush_quietly()
