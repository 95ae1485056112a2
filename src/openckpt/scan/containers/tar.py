"""tar archives (also old torch's tar format): every regular member is scanned, links and traversal flagged.

The headers are read with :mod:`tarfile` over a read-only view of the bytes; nothing is extracted.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

from openckpt.scan.containers import MemberScanner
from openckpt.scan.limits import Context, LimitError
from openckpt.scan.verdict import Severity

__all__ = ["scan"]


class _View(io.RawIOBase):
    """A seekable read-only file over ``buf[start:end]`` (no copy of the whole archive)."""

    def __init__(self, buf: Any, start: int, end: int) -> None:
        self.buf, self.start, self.end, self.pos = buf, start, end, start

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos - self.start

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: self.start, 1: self.pos, 2: self.end}[whence]
        self.pos = max(self.start, min(base + offset, self.end))
        return self.pos - self.start

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.end - self.pos)
        b[:n] = self.buf[self.pos : self.pos + n]
        self.pos += n
        return n


def scan(ctx: Context, router: MemberScanner, buf: Any, start: int, end: int, member: str | None, depth: int) -> None:
    """Scan each member of an uncompressed tar archive by its content."""
    count = 0
    try:
        with tarfile.open(fileobj=_View(buf, start, end), mode="r:") as archive:
            for info in archive:
                count += 1
                if count > ctx.limits.max_entries:
                    raise ctx.limit(f"more than {ctx.limits.max_entries} archive entries", member=member)
                where = f"{member}!{info.name}" if member else info.name
                parts = info.name.replace("\\", "/").split("/")
                if info.name.startswith("/") or ".." in parts:
                    ctx.add(
                        "archive-traversal",
                        Severity.SUSPICIOUS,
                        f"member path leaves the archive: {info.name!r}",
                        member=where,
                    )
                if info.issym() or info.islnk():
                    ctx.add("archive-link", Severity.SUSPICIOUS, f"link to {info.linkname!r}", member=where)
                elif info.isfile():
                    data = start + info.offset_data
                    try:
                        router.scan(buf, data, min(data + info.size, end), where, depth + 1)
                    except LimitError:
                        continue
    except tarfile.TarError as e:
        ctx.add("tar-invalid", Severity.INFO, f"invalid tar archive: {e}", member=member, inconclusive=True)
