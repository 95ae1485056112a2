"""``openckpt.scan(paths)``: scan files and directories without importing, unpickling or executing anything."""

from __future__ import annotations

import mmap
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from openckpt.scan.formats import dcp
from openckpt.scan.limits import Context, LimitError, Limits
from openckpt.scan.route import Router
from openckpt.scan.verdict import FileResult, Finding, ScanReport, Severity

__all__ = ["scan", "scan_bytes", "scan_file"]


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                yield Path(root) / name
    else:
        yield path


def scan_bytes(data: bytes, *, name: str = "<bytes>", limits: Limits | None = None) -> FileResult:
    """Scan an in-memory file."""
    return _run(Context(name, limits or Limits()), data, len(data))


def _run(ctx: Context, buf: object, size: int) -> FileResult:
    started = time.monotonic()
    fmt = "unknown"
    try:
        fmt = Router(ctx).scan(buf, 0, size, None, 0)
    except LimitError:
        pass
    except RecursionError:
        ctx.add("limit", Severity.INFO, "limit reached: recursion depth", inconclusive=True)
    except Exception as e:  # a scanner bug must never read as clean
        ctx.add("scanner-error", Severity.INFO, f"scanner error: {type(e).__name__}: {e}", inconclusive=True)
    took = time.monotonic() - started
    return FileResult(ctx.file, fmt, ctx.findings, size, took, sorted(ctx.imports), sorted(ctx.runs))


def scan_file(path: str | os.PathLike[str], *, limits: Limits | None = None) -> FileResult:
    """Scan one file (memory-mapped, read-only); an unreadable file is an inconclusive result."""
    path = Path(path)
    ctx = Context(str(path), limits or Limits())
    try:
        if path.is_symlink():
            ctx.add("symlink", Severity.SUSPICIOUS, f"symbolic link to {os.readlink(path)}")
        if not stat.S_ISREG(path.stat().st_mode):
            ctx.add("unreadable", Severity.INFO, "not a regular file", inconclusive=True)
            return FileResult(str(path), "special", ctx.findings)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return _run(ctx, b"", 0)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _run(ctx, buf, size)
    except OSError as e:
        ctx.add("unreadable", Severity.INFO, f"cannot read: {e.strerror or e}", inconclusive=True)
        return FileResult(str(path), "unreadable", ctx.findings)


def scan(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *, limits: Limits | None = None
) -> ScanReport:
    """Scan files (directories recursively) and return one result per file.

    Never imports, unpickles or executes the content. Verdicts are clean / suspicious / malicious, each complete
    or inconclusive; anything that could not be fully inspected is inconclusive, never clean.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    report = ScanReport()
    for item in items:
        path = Path(item)
        if not path.exists() and not path.is_symlink():
            report.results.append(FileResult(str(path), "missing", [_missing(path)]))
            continue
        found = [scan_file(file, limits=limits) for file in _files(path)]
        if path.is_dir() and not path.is_symlink():
            for directory in sorted({Path(r.path).parent for r in found if Path(r.path).name == dcp.METADATA}):
                dcp.check_directory(directory, found, limits or Limits(), router=Router)
        report.results += found
    return report


def _missing(path: Path) -> Finding:
    return Finding("unreadable", Severity.INFO, "no such file or directory", str(path), inconclusive=True)
