"""``torch.distributed.checkpoint`` directories: every item the ``.metadata`` storage index points at.

``FileSystemReader`` unpickles ``.metadata`` (its dataclasses are allowlisted exactly) and reads each item as
``torch.load`` of ``relative_path[offset : offset + length]``. Each ``.distcp`` file is already scanned on its own
(as the archives it is made of); here each indexed byte range is scanned again as the file ``torch.load`` sees, so
that an index pointing elsewhere than the archive boundaries cannot hide anything, and an index pointing outside
the checkpoint directory is reported.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable
from pathlib import Path

from openckpt.scan.containers import MemberScanner
from openckpt.scan.limits import Context, LimitError, Limits
from openckpt.scan.pickle.streams import scan_streams
from openckpt.scan.pickle.values import Call, DictV, Global, lookup
from openckpt.scan.verdict import FileResult, Finding, Severity

__all__ = ["METADATA", "check_directory", "storage_items"]

METADATA = ".metadata"
_MAX_METADATA = 1 << 30


def storage_items(data: bytes, limits: Limits) -> list[tuple[str, int, int]] | None:
    """``(relative_path, offset, length)`` of every item in a ``.metadata`` pickle, or ``None`` if it is not one."""
    scratch = Context(METADATA, limits)
    streams = scan_streams(scratch, data, 0, len(data), member=None, loader="pickle", nested=None, limit=1)
    top = streams[0].value if streams and streams[0].error is None else None
    if not (isinstance(top, Call) and isinstance(top.func, Global) and top.func.name == "Metadata"):
        return None
    index = lookup(top.state, "storage_data")
    if not isinstance(index, DictV):
        return None
    items = []
    for _, info in index.items:
        state = info.state if isinstance(info, Call) else None
        path, offset, length = (lookup(state, k) for k in ("relative_path", "offset", "length"))
        if isinstance(path, str) and isinstance(offset, int) and isinstance(length, int):
            items.append((path, offset, length))
    return items


def check_directory(
    directory: Path, results: list[FileResult], limits: Limits, *, router: Callable[[Context], MemberScanner]
) -> None:
    """Scan each indexed item of the checkpoint in ``directory`` with ``router(context)`` (the scan's
    :class:`~openckpt.scan.route.Router`); findings join the results of the files."""
    meta = directory / METADATA
    by_path = {Path(r.path).resolve(): r for r in results}
    meta_result = by_path.get(meta.resolve())
    if meta_result is None or meta.stat().st_size > _MAX_METADATA:
        return
    items = storage_items(meta.read_bytes(), limits)
    if not items:
        return
    for rel, offset, length in items:
        target = (directory / rel).resolve()
        if rel.startswith("/") or ".." in Path(rel).parts or target.parent != directory.resolve():
            reason = f"storage index points outside the checkpoint directory: {rel!r}"
            _add(meta_result, Finding("dcp-index", Severity.SUSPICIOUS, reason, meta_result.path))
            continue
        result = by_path.get(target)
        if result is None or offset < 0 or length <= 0:
            continue  # the loader fails: no such file, or an empty item
        ctx = Context(result.path, limits)
        with open(target, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if offset + length > len(buf):
                reason = f"storage item {rel}@{offset} runs past the end of the file: the loader fails"
                _add(result, Finding("dcp-index", Severity.INFO, reason, result.path))
                continue
            with contextlib.suppress(LimitError):
                router(ctx).scan(buf, offset, offset + length, f"item@{offset}", 1)
        for finding in ctx.findings:
            _add(result, finding)
        result.imports = sorted(set(result.imports) | ctx.imports)


def _add(result: FileResult, finding: Finding) -> None:
    key = (finding.rule, finding.severity, finding.reason, finding.callable, finding.inconclusive)
    if all((f.rule, f.severity, f.reason, f.callable, f.inconclusive) != key for f in result.findings):
        result.findings.append(finding)
