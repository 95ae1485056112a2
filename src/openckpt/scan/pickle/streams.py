"""Every pickle stream of a file: ``pickle.load`` reads one, but a loader may call it again on the same file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openckpt.scan.limits import Context
from openckpt.scan.pickle.machine import Machine, Nested, Stream
from openckpt.scan.pickle.opcodes import VALID
from openckpt.scan.pickle.semantics import Semantics
from openckpt.scan.pickle.values import Call
from openckpt.scan.verdict import Severity

__all__ = ["scan_streams"]

OnBuild = Callable[[Semantics, Call, int, int], int]


def scan_streams(  # noqa: PLR0913 — the Machine's five keywords plus which streams; 9 callers name each
    ctx: Context,
    buf: Any,
    start: int,
    end: int,
    *,
    member: str | None,
    loader: str,
    nested: Nested | None,
    on_build: OnBuild | None = None,
    probe: bool = False,
    limit: int | None = None,
    first: bool = True,
) -> list[Stream]:
    """Scan consecutive streams from ``start`` until the data ends, a stream fails, or ``limit`` streams.

    Bytes after the last stream that do not start another one are reported as trailing data (inconclusive):
    no loader reads them as a pickle, but a scanner cannot vouch for what an unknown loader does with them.
    ``first``: ``start`` begins the data (a stream failing there before importing anything is opaque data).
    """
    streams: list[Stream] = []
    pos = start
    while pos < end and (limit is None or len(streams) < limit):
        if len(streams) >= ctx.limits.max_streams:
            raise ctx.limit(f"more than {ctx.limits.max_streams} pickle streams", member=member, offset=pos)
        if streams and buf[pos] not in VALID:
            if not probe:
                reason = f"{end - pos} bytes of trailing data after the last pickle stream"
                ctx.add("pickle-trailing-data", Severity.INFO, reason, member=member, offset=pos, inconclusive=True)
            break
        machine = Machine(ctx, buf, member=member, loader=loader, nested=nested, probe=probe, on_build=on_build)
        machine.first = first and not streams
        stream = machine.stream(pos, end)
        if probe and stream.error is not None and streams:
            break
        streams.append(stream)
        if stream.error is not None:
            break
        pos = stream.end
    return streams
