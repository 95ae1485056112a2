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

A revision's files are downloaded several at a time, the streamable ones followable from their first byte, so that a
follower starts from what has arrived while the rest was being gated. Followers that keep up are sent the received
chunks themselves, kept in memory while they are among the newest :data:`WINDOW` bytes (no copy; the fetcher waits
up to :data:`PATIENCE` for a follower to take the oldest). A follower that joined late or fell behind reads what left
memory from the file the blob store is writing the blob into (``BlobWriter.local_file``: no second copy of the
bytes), or, for a store without one (S3), from a spool file under the data directory, removed when the fetch ends
(open descriptors keep reading). Followers are the readers of this process; a reader in another process of the same
data directory waits for the fetch to end (``cache.ensure``'s file lock).
This mirrors what pull-through caches such as Artifactory's remote repositories do for a cold artifact (stream to
the first reader while caching), with the trust gate in front of what cannot be judged as it arrives.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openckpt.scan.formats.safetensors import MAX_HEADER, check_header
from openckpt.store.blobs import BlobWriter

__all__ = ["HOLD", "Fetch", "Follower", "LiveFile", "follow", "streamable"]

HOLD = 1 << 20
"""Bytes at the end of a streamed file held back until the revision's verdict (:meth:`Fetch.release`)."""
WAIT = 1.0
"""Seconds a follower waits for news before looking again (the fetcher notifies on every chunk)."""
WINDOW = 32 << 20
"""Bytes of a streamed file, the newest arrived, kept in memory for the followers that keep up."""
PATIENCE = 1.0
"""Seconds the fetcher waits for a follower to take the oldest chunk in memory before it drops it (the follower then
reads it from the file)."""

ALIGN = 4096
"""What ``O_DIRECT`` reads align to."""

_JOBS: dict[tuple[str, ...], Fetch] = {}
_JOBS_LOCK = threading.Lock()


def streamable(path: str, sha256: str | None, size: int) -> bool:
    """Whether a file may stream before its revision's verdict (module docstring): LFS safetensors, larger than
    :data:`HOLD` (smaller ones gain nothing)."""
    return sha256 is not None and path.endswith(".safetensors") and size > HOLD


@dataclass
class LiveFile:
    """A file of the revision being fetched, as readers follow it: ``received`` bytes of it have arrived, the first
    ``in_file`` of them readable from ``fd``, the rest in ``window``."""

    path: str
    size: int
    sha256: str
    commit: str
    fd: int = -1
    """A read descriptor of the file the bytes go to (the store's, or a spool), once they arrive."""
    direct: bool = False
    """Whether ``fd`` reads around the page cache (``O_DIRECT``)."""
    received: int = 0
    in_file: int = 0
    window: deque[tuple[int, bytes]] = field(default_factory=deque)
    """The newest chunks received (offset, bytes): :data:`WINDOW` bytes at least, and all not yet in the file."""
    held: int = 0
    """Bytes in ``window``."""
    valid: bool | None = None
    """Its header passed (True) or failed (False) the safetensors check; None until it has arrived."""
    head: bytearray = field(default_factory=bytearray)
    """The first bytes, until the header has arrived whole."""
    followers: list[Follower] = field(default_factory=list)


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
    _spools: list[tuple[Path, int]] = field(default_factory=list)
    """The spools of this fetch's own and their write descriptors (:meth:`end` closes and removes them)."""

    # ---- the fetcher's side

    def prepare(self, commit: str, files: list[tuple[str, int, str]]) -> None:
        """Let readers follow ``files`` (path, size, sha256) of ``commit`` from their first byte once :meth:`offer`
        lets them."""
        for path, size, sha256 in files:
            self.pending[path] = LiveFile(path, size, sha256, commit)

    def offer(self) -> None:
        """Let readers follow the prepared files: the rest of the revision passed the scan gate."""
        with self.cond:
            self.files.update(self.pending)
            self.cond.notify_all()

    def sink(self, path: str, writer: BlobWriter) -> Callable[[bytes], None] | None:
        """Where the bytes of ``path`` go as they arrive, once ``writer`` (the store's) has them (None: nobody may
        follow it); :meth:`end` closes it."""
        live = self.pending.get(path)
        if live is None:
            return None
        local = writer.local_file()
        spool = None
        if local is None:  # a store without a local file: a spool of the fetch's own
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            local = self.folder / uuid.uuid4().hex
            spool = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            self._spools.append((local, spool))
        with self.cond:
            live.fd, live.direct = _open_direct(local)  # kept when the store moves or removes the file

        def sink(chunk: bytes) -> None:  # one thread calls it, in order: only it changes ``live``
            if spool is not None:
                _write_fully(spool, chunk)
            in_file = writer.in_file if spool is None else live.received + len(chunk)
            valid = live.valid
            if valid is None:
                live.head += chunk
                valid = _header_valid(live.head, live.size)
            with self.cond:
                live.window.append((live.received, chunk))
                live.held += len(chunk)
                live.received += len(chunk)
                live.in_file = in_file
                if valid is not None:
                    live.valid, live.head = valid, bytearray()
                self.cond.notify_all()
                self._make_room(live)

        return sink

    def _make_room(self, live: LiveFile) -> None:
        """Drop the oldest chunks of ``live`` from memory, keeping :data:`WINDOW` bytes and all not yet in the file,
        once the followers there took them (waiting :data:`PATIENCE` seconds at most: a follower that is slower reads
        the file). Holding ``cond``."""
        deadline = time.monotonic() + PATIENCE
        while live.held - len(live.window[0][1]) >= WINDOW:
            start, chunk = live.window[0]
            end = start + len(chunk)
            if end > live.in_file:
                return
            left = deadline - time.monotonic()
            if left > 0 and any(start <= f.pos < end for f in live.followers):
                self.cond.wait(left)
                continue
            live.window.popleft()
            live.held -= len(chunk)

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
            for live in self.pending.values():
                if live.fd >= 0:
                    os.close(live.fd)  # followers read from descriptors of their own
                    live.fd = -1
        for spool, fd in self._spools:
            os.close(fd)
            spool.unlink(missing_ok=True)

    # ---- a reader's side

    def wait_for(self, path: str) -> Follower | None:
        """A follower of ``path`` once it may stream (:meth:`Follower.close` it); None once the fetch is over without
        that (read the cache); the fetch's error if it failed."""
        with self.cond:
            while True:
                live = self.files.get(path)
                if live is not None and live.valid and not self.done:  # its descriptor is open until done
                    follower = Follower(self, live, os.dup(live.fd))
                    live.followers.append(follower)
                    return follower
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


@dataclass(eq=False)
class Follower:
    """A reader of ``live`` as it arrives: ``pos`` bytes of it taken so far (while they are among the newest, the
    fetcher waits for them: :meth:`Fetch._make_room`), ``fd`` its own descriptor of the file they go to."""

    job: Fetch
    live: LiveFile
    fd: int
    pos: int = 0
    _buffer: mmap.mmap | None = None

    def readable(self) -> int:
        """How far the file may be sent, waiting until past ``pos`` (blocking: :meth:`Fetch.readable`)."""
        return self.job.readable(self.live, self.pos)

    def take(self, limit: int) -> bytes | memoryview | None:
        """The next bytes, up to ``limit`` (a :meth:`readable` one), as received (no copy) while they are in memory;
        None when they no longer are: :meth:`read_file` them."""
        with self.job.cond:
            for start, chunk in self.live.window:
                end = start + len(chunk)
                if start <= self.pos < end:
                    whole = start == self.pos and end <= limit
                    piece = chunk if whole else memoryview(chunk)[self.pos - start : limit - start]
                    self.pos += len(piece)
                    self.job.cond.notify_all()  # the fetcher may be waiting for this
                    return piece
        return None

    def read_file(self, limit: int, most: int) -> bytes:
        """The next bytes, up to ``limit`` and ``most`` of them, from the file (blocking): those no longer in memory
        are there. Read around the page cache where the file system allows (:func:`_open_direct`)."""
        end = min(self.pos + most, self.live.in_file, limit)
        if self.live.direct:
            start = self.pos - self.pos % ALIGN
            if self._buffer is None:
                self._buffer = mmap.mmap(-1, most + 2 * ALIGN)
            span = min(-(-(end - start) // ALIGN) * ALIGN, len(self._buffer))
            got = os.preadv(self.fd, [memoryview(self._buffer)[:span]], start)
            piece = self._buffer[self.pos - start : max(self.pos, min(end, start + got)) - start]
        else:
            piece = os.pread(self.fd, end - self.pos, self.pos)
        if not piece:
            raise RuntimeError(f"the file of {self.live.path} is shorter than received")
        self.pos += len(piece)
        return piece

    def close(self) -> None:
        with self.job.cond:
            self.live.followers.remove(self)
            self.job.cond.notify_all()
        os.close(self.fd)
        if self._buffer is not None:
            self._buffer.close()


def _header_valid(head: bytearray, size: int) -> bool | None:
    """Whether the safetensors header at the start of ``head`` (the first bytes of a ``size``-byte file) passes the
    scanner's check; None until it has all arrived."""
    if len(head) < 8:
        return None
    (n,) = struct.unpack_from("<Q", head)
    if n > MAX_HEADER or 8 + n > size:
        return False
    if len(head) < 8 + n:
        return None
    try:
        check_header(bytes(head[8 : 8 + n]), size - 8 - n)
    except ValueError:
        return False
    return True


def _open_direct(path: Path) -> tuple[int, bool]:
    """A read descriptor of ``path``, around the page cache (``O_DIRECT``) where the file system allows, and whether
    it is: the store may be writing the file around the page cache, where pages a buffered read brought in (and
    read ahead) could go stale, in the follower's reads and in the stored blob's."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    direct = getattr(os, "O_DIRECT", 0)
    if direct:
        try:
            return os.open(path, flags | direct), True
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: a file system without O_DIRECT
                raise
    return os.open(path, flags), False


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
