"""Cold reads that stream while the mirror fetches: a fetch of a revision run in the background (:func:`follow`) and
the files of it that readers may follow as they arrive (``services/mirror/cache.py`` decides what to fetch).

Which files stream before the revision's verdict, and why it is safe:

- Only the LFS files named ``*.safetensors`` whose header has arrived and passed the scanner's own strict check
  (``scan.formats.safetensors.check_header``: JSON, known dtypes, shapes matching offsets that tile the data to the
  end of the file). Such a file holds tensors and a header, no code; the rest of the revision (pickles, archives,
  configs, cards: whatever the scanner must see whole) is fetched **first** and must pass the scan gate before any
  byte of the revision is sent. A ``.safetensors`` file whose header fails is never streamed (its readers wait for
  the verdict, then get the gate's answer).
- Nothing streams when a license policy applies to the repo, or for a repo only a user's own upstream token reaches:
  those reads wait for the whole verdict, as before.
- The last :data:`HOLD` bytes of a streamed file are sent only once every file of the revision has arrived and
  matched the upstream's tree (sha256, sizes, git ids), passed the scan gate, and the license policy let the
  revision in (:meth:`Fetch.release`, just before the commit is written): until then no client holds a complete
  file, and a zip's end record (within the last 65,557 bytes: what ``torch.load`` would look for in a polyglot) is
  never among what was sent. On any failure the connection is cut: the client holds a short file it will not use
  (``huggingface_hub`` keeps it as ``.incomplete`` and checks the size).

A revision's files are downloaded several at a time, the streamable ones spooled from their first byte, so that a
follower starts from what has arrived while the rest was being gated. Bytes are teed into a spool file under the
data directory as they arrive (bounded memory), read by every follower, and removed when the fetch ends (open
descriptors keep reading). Followers are the readers of this process; a reader in another process of the same data
directory waits for the fetch to end (``cache.ensure``'s file lock).
This mirrors what pull-through caches such as Artifactory's remote repositories do for a cold artifact (stream to
the first reader while caching), with the trust gate in front of what cannot be judged as it arrives.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openckpt.scan.formats.safetensors import MAX_HEADER, check_header

__all__ = ["HOLD", "Fetch", "LiveFile", "follow", "streamable"]

HOLD = 1 << 20
"""Bytes at the end of a streamed file held back until the revision's verdict (:meth:`Fetch.release`)."""
WAIT = 1.0
"""Seconds a follower waits for news before looking again (the fetcher notifies on every chunk)."""

_JOBS: dict[tuple[str, ...], Fetch] = {}
_JOBS_LOCK = threading.Lock()


def streamable(path: str, sha256: str | None, size: int) -> bool:
    """Whether a file may stream before its revision's verdict (module docstring): LFS safetensors, larger than
    :data:`HOLD` (smaller ones gain nothing)."""
    return sha256 is not None and path.endswith(".safetensors") and size > HOLD


@dataclass
class LiveFile:
    """A file of the revision being fetched, as readers follow it: ``received`` bytes of it are in ``spool``."""

    path: str
    size: int
    sha256: str
    commit: str
    spool: Path
    received: int = 0
    valid: bool | None = None
    """Its header passed (True) or failed (False) the safetensors check; None until it has arrived."""


@dataclass
class Fetch:
    """One fetch of a revision in this process, that readers follow."""

    folder: Path
    cond: threading.Condition = field(default_factory=threading.Condition)
    files: dict[str, LiveFile] = field(default_factory=dict)
    """The files readers may follow (:meth:`offer`)."""
    pending: dict[str, LiveFile] = field(default_factory=dict)
    released: bool = False
    done: bool = False
    error: BaseException | None = None
    _fds: list[int] = field(default_factory=list)

    # ---- the fetcher's side

    def prepare(self, commit: str, files: list[tuple[str, int, str]]) -> None:
        """Spool ``files`` (path, size, sha256) of ``commit`` from their first byte, for readers to follow once
        :meth:`offer` lets them."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, size, sha256 in files:
            self.pending[path] = LiveFile(path, size, sha256, commit, self.folder / uuid.uuid4().hex)

    def offer(self) -> None:
        """Let readers follow the prepared files: the rest of the revision passed the scan gate."""
        with self.cond:
            self.files.update(self.pending)
            self.cond.notify_all()

    def spool(self, path: str) -> Callable[[bytes], None] | None:
        """A sink of the bytes of ``path`` as they arrive (None: nobody may follow it); :meth:`end` closes them."""
        live = self.pending.get(path)
        if live is None:
            return None
        fd = os.open(live.spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._fds.append(fd)

        def sink(chunk: bytes) -> None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            with self.cond:
                live.received += len(chunk)
                if live.valid is None:
                    live.valid = _header_valid(live)
                self.cond.notify_all()

        return sink

    def release(self) -> None:
        """Every file of the revision arrived whole, matched the upstream's tree and passed the scan gate, and the
        license policy let the revision in: the held tails may go (the commit is written next)."""
        with self.cond:
            self.released = True
            self.cond.notify_all()

    def end(self, error: BaseException | None) -> None:
        with self.cond:
            self.done, self.error = True, error
            self.cond.notify_all()
        for fd in self._fds:
            os.close(fd)
        for live in self.pending.values():
            live.spool.unlink(missing_ok=True)

    # ---- a reader's side

    def wait_for(self, path: str) -> tuple[LiveFile, int] | None:
        """``path`` once it may stream, and a descriptor of its spool; None once the fetch is over without that (read
        the cache); the fetch's error if it failed."""
        with self.cond:
            while True:
                live = self.files.get(path)
                if live is not None and live.valid and not self.done:  # the spool exists until done
                    return live, os.open(live.spool, os.O_RDONLY | os.O_CLOEXEC)
                if self.done:
                    if self.error is not None:
                        raise self.error
                    return None
                self.cond.wait(WAIT)

    def wait_done(self, timeout: float) -> bool:
        """Whether the fetch is over, waiting up to ``timeout`` seconds; the fetch's error if it failed."""
        with self.cond:
            self.cond.wait_for(lambda: self.done, timeout)
            if self.error is not None:
                raise self.error
            return self.done

    def readable(self, live: LiveFile, have: int) -> int:
        """How many bytes of ``live`` may be sent, waiting until more than ``have`` may; the fetch's error if it
        failed (the reader then cuts the connection)."""
        with self.cond:
            while True:
                if self.error is not None:
                    raise self.error
                limit = live.size if self.released else min(live.received, live.size - HOLD)
                if limit > have:
                    return limit
                if self.done:
                    raise RuntimeError(f"the fetch of {live.path} ended before its bytes were released")
                self.cond.wait(WAIT)


def _header_valid(live: LiveFile) -> bool | None:
    """Whether the safetensors header of ``live`` passes the scanner's check; None until it has all arrived."""
    if live.received < 8:
        return None
    with open(live.spool, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER or 8 + n > live.size:
            return False
        if live.received < 8 + n:
            return None
        raw = f.read(n)
    try:
        check_header(raw, live.size - 8 - n)
    except ValueError:
        return False
    return True


def follow(key: tuple[str, ...], folder: Path, run: Callable[[Fetch], None]) -> Fetch:
    """The fetch of ``key`` running in this process, started now (``run`` in a thread of its own, spooling under
    ``folder``) if none is."""
    with _JOBS_LOCK:
        job = _JOBS.get(key)
        if job is not None and not job.done:
            return job
        job = Fetch(folder)
        _JOBS[key] = job
    threading.Thread(target=_run, args=(key, job, run), daemon=True, name="openckpt-mirror-fetch").start()
    return job


def _run(key: tuple[str, ...], job: Fetch, run: Callable[[Fetch], None]) -> None:
    error: BaseException | None = None
    try:
        run(job)
    except BaseException as e:  # handed to every follower
        error = e
    finally:
        job.end(error)
        with _JOBS_LOCK:
            if _JOBS.get(key) is job:
                del _JOBS[key]
