"""7z archives, unpacked with ``py7zr`` into memory under the limits of zip and tar.

The archive is read in place (a memory-mapped file is not copied). Entry count, names (traversal, links) and
encryption are checked from the header first; members are then decoded into writers that count every byte
(``max_unpacked``, ``max_ratio`` against the archive's size, :data:`MAX_MEMBER` per member) and stop the extraction
when a limit is reached, so declared sizes are never trusted.
"""

from __future__ import annotations

import io
from typing import Any

import py7zr
from py7zr.io import Py7zIO, WriterFactory

from openckpt.scan.containers import MemberScanner
from openckpt.scan.limits import Context, LimitError
from openckpt.scan.verdict import Severity

__all__ = ["MAX_MEMBER", "scan"]

MAX_MEMBER = 4 << 30
"""Bytes of one member held in memory."""


class _Window(io.RawIOBase):
    """``buf[start:end]`` (bytes or a memory-mapped file) as a seekable file, read in place."""

    def __init__(self, buf: Any, start: int, end: int) -> None:
        super().__init__()
        self.buf, self.start, self.end, self.pos = buf, start, end, start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), self.end - self.pos))
        b[:n] = self.buf[self.pos : self.pos + n]
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: self.start, io.SEEK_CUR: self.pos, io.SEEK_END: self.end}[whence]
        self.pos = max(self.start, base + offset)
        return self.pos - self.start

    def tell(self) -> int:
        return self.pos - self.start


class _Counted(Py7zIO):
    """An in-memory member that accounts for each byte written and raises at a limit."""

    def __init__(self, ctx: Context, where: str, budget: _Budget) -> None:
        self.ctx, self.where, self.budget = ctx, where, budget
        self.buffer = io.BytesIO()

    def write(self, s: bytes | bytearray) -> int:
        self.budget.add(len(s), self.where)
        if self.buffer.tell() + len(s) > MAX_MEMBER:
            raise self.ctx.limit(f"7z member larger than {MAX_MEMBER} bytes in memory", member=self.where)
        return self.buffer.write(s)

    def read(self, size: int | None = None) -> bytes:
        return self.buffer.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.buffer.seek(offset, whence)

    def flush(self) -> None:
        self.buffer.flush()

    def size(self) -> int:
        return len(self.buffer.getbuffer())


class _Budget:
    def __init__(self, ctx: Context, packed: int) -> None:
        self.ctx, self.packed, self.total = ctx, packed, 0

    def add(self, n: int, where: str) -> None:
        self.total += n
        self.ctx.unpack(n, where)
        limits = self.ctx.limits
        if self.total > limits.ratio_floor and self.total > limits.max_ratio * max(self.packed, 1):
            raise self.ctx.limit(f"compression ratio above {limits.max_ratio:g}:1", member=where)


class _Factory(WriterFactory):
    def __init__(self, ctx: Context, member: str | None, budget: _Budget) -> None:
        self.ctx, self.member, self.budget = ctx, member, budget
        self.products: dict[str, _Counted] = {}

    def create(self, filename: str) -> Py7zIO:
        where = f"{self.member}!{filename}" if self.member else filename
        self.products[filename] = _Counted(self.ctx, where, self.budget)
        return self.products[filename]


def scan(ctx: Context, router: MemberScanner, buf: Any, start: int, end: int, member: str | None, depth: int) -> bool:
    """List, check and unpack the archive, then scan each member (routed by its bytes); ``False`` if it could not
    be read (an inconclusive finding says why)."""
    label = member or "(7z)"
    try:
        archive = py7zr.SevenZipFile(io.BufferedReader(_Window(buf, start, end)))
    except (py7zr.exceptions.ArchiveError, py7zr.PasswordRequired, EOFError, ValueError, OSError) as e:
        ctx.add("7z-invalid", Severity.INFO, f"cannot read 7z archive: {e}", member=member, inconclusive=True)
        return False
    with archive:
        infos = archive.list()
        if len(infos) > ctx.limits.max_entries:
            raise ctx.limit(f"more than {ctx.limits.max_entries} archive entries", member=member)
        if archive.needs_password():
            reason = "encrypted 7z archive cannot be inspected"
            ctx.add("7z-encrypted", Severity.INFO, reason, member=member, inconclusive=True)
            return False
        for info in infos:
            where = f"{label}!{info.filename}"
            parts = info.filename.replace("\\", "/").split("/")
            if info.filename.startswith(("/", "\\")) or ".." in parts:
                reason = f"member path leaves the archive: {info.filename!r}"
                ctx.add("archive-traversal", Severity.SUSPICIOUS, reason, member=where)
            if info.is_symlink:
                ctx.add(
                    "archive-link", Severity.SUSPICIOUS, f"member is a symbolic link: {info.filename!r}", member=where
                )
        factory = _Factory(ctx, label, _Budget(ctx, end - start))
        try:
            archive.extractall(factory=factory)
        except LimitError:
            raise
        except Exception as e:  # py7zr raises many types for corrupt data
            ctx.add("7z-invalid", Severity.INFO, f"cannot unpack 7z archive: {e}", member=member, inconclusive=True)
            return False
    for name, product in factory.products.items():
        data = product.buffer.getvalue()
        router.scan(data, 0, len(data), f"{label}!{name}", depth + 1)
    return True
