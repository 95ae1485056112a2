"""Stable-Baselines3 ``model.zip``: the ``data`` JSON whose ``:serialized:`` fields SB3's loader unpickles.

``save_util.json_to_data`` runs ``cloudpickle.loads(base64.b64decode(item[":serialized:"]))`` on every such field
(policy class, spaces, schedules); base64 is decoded as it does (``validate=False``: characters outside the alphabet
are dropped) and each result is scanned as a pickle stream. The ``.pth`` members are torch files, scanned as such.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.verdict import Severity

__all__ = ["is_sb3_zip", "scan_data"]

_MAX_JSON = 256 << 20

ScanPickle = Callable[[bytes, str], None]
"""``scan(data, item)``: scan ``data``, the decoded ``:serialized:`` value of the JSON item ``item``."""


def is_sb3_zip(names: list[str]) -> bool:
    """A zip SB3's ``save_to_zip_file`` wrote: a ``data`` member beside ``policy.pth`` or the version file."""
    return "data" in names and ("_stable_baselines3_version" in names or "policy.pth" in names)


def scan_data(ctx: Context, raw: bytes, scan: ScanPickle, *, member: str) -> bool:
    """Scan every ``:serialized:`` value of the ``data`` JSON (top-level items, as the loader reads, and nested ones
    for good measure); ``False`` if ``data`` is not JSON (then it is scanned as any other member)."""
    if len(raw) > _MAX_JSON:
        raise ctx.limit("SB3 data JSON larger than 256 MiB", member=member)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == ":serialized:" and isinstance(value, str):
                try:
                    data = base64.b64decode(value.encode("utf-8", "replace"))
                except (binascii.Error, ValueError):
                    ctx.add("sb3-invalid", Severity.INFO, f"{where} is not base64: the loader fails", member=member)
                    continue
                scan(data, path)
            else:
                stack.append((where, value))
    return True
