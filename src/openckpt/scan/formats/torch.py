"""PyTorch files: the zip layout ``torch.save`` writes, TorchScript archives, and the legacy stream format.

A zip is torch's when a member ``<archive>/data.pkl`` exists; ``<archive>/data/<key>`` members are storages
(tensor bytes, never parsed). A legacy file is five pickles (magic number, protocol 1001, sys info, the object,
the storage keys) followed by each storage as an int64 element count and its bytes; every pickle is scanned and
the storage records are walked exactly as ``torch.serialization._legacy_load`` reads them.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.pickle.machine import Nested
from openckpt.scan.pickle.streams import OnBuild, scan_streams
from openckpt.scan.pickle.values import Global
from openckpt.scan.verdict import Severity

__all__ = ["MAGIC", "is_torch_zip", "member_role", "scan_legacy"]

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
ELEMENT_SIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
    "UntypedStorage": 1,
}
_STORAGE = re.compile(r"^[^/]+/data/[^/]+$")


def is_torch_zip(names: list[str]) -> bool:
    """Whether torch.load would read this zip: it has ``<archive>/data.pkl`` or is a TorchScript archive."""
    return any(n.count("/") == 1 and n.endswith(("/data.pkl", "/constants.pkl")) for n in names)


def member_role(name: str) -> str:
    """``storage`` (tensor bytes), ``code`` (TorchScript source) or ``other`` for a torch zip member."""
    if _STORAGE.match(name):
        return "storage"
    parts = name.split("/")
    if len(parts) > 2 and parts[1] in ("code", ".data") and name.endswith((".py", ".pkl", ".debug_pkl")):
        return "code" if name.endswith(".py") else "other"
    return "other"


def scan_legacy(
    ctx: Context,
    buf: Any,
    start: int,
    end: int,
    *,
    member: str | None,
    nested: Nested,
    on_build: OnBuild,
    loader: str = "pickle",
) -> str:
    """Scan a file that starts with a pickle: as a legacy torch file if it is one, else as consecutive streams.

    Returns the format name (``torch-legacy``, ``pickle`` or ``joblib``).
    """
    head = scan_streams(ctx, buf, start, end, member=member, loader=loader, nested=nested, on_build=on_build, limit=1)
    if head and head[0].error is None and head[0].value == MAGIC and head[0].end < end:
        more = scan_streams(
            ctx, buf, head[0].end, end, member=member, loader="torch", nested=nested, limit=4, first=False
        )
        head += more
    if len(head) == 5 and all(s.error is None for s in head) and head[0].value == MAGIC and head[1].value == PROTOCOL:
        pos = _storages(ctx, buf, head[4].end, end, head[3].persids, head[4].value, member)
        if pos is not None and pos < end:
            scan_streams(
                ctx, buf, pos, end, member=member, loader="pickle", nested=nested, on_build=on_build, first=False
            )
        return "torch-legacy"
    if head and head[-1].error is None and head[-1].end < end:
        scan_streams(
            ctx, buf, head[-1].end, end, member=member, loader=loader, nested=nested, on_build=on_build, first=False
        )
    return "pickle"


def _storages(
    ctx: Context, buf: Any, pos: int, end: int, persids: list[Any], keys: Any, member: str | None
) -> int | None:
    sizes: dict[str, int] = {}
    for pid in persids:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], Global):
            sizes[str(pid[2])] = ELEMENT_SIZE.get(pid[1].name.rsplit(".", 1)[-1], 0)
        else:
            ctx.add("torch-persid", Severity.SUSPICIOUS, f"unknown persistent id {pid!r:.80}", member=member)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        ctx.add(
            "torch-layout", Severity.INFO, "storage key list is not a list of str", member=member, inconclusive=True
        )
        return None
    for key in keys:
        size = sizes.get(key, 0)
        if not size or pos + 8 > end:
            reason = f"storage {key!r} has no known element size or is truncated"
            ctx.add("torch-layout", Severity.INFO, reason, member=member, offset=pos, inconclusive=True)
            return None
        (count,) = struct.unpack_from("<q", buf, pos)
        if count < 0 or pos + 8 + count * size > end:
            reason = f"storage {key!r} claims {count} elements past the end of the file"
            ctx.add("torch-layout", Severity.INFO, reason, member=member, offset=pos, inconclusive=True)
            return None
        pos += 8 + count * size
    return pos
