"""Containers: zip (relaxed, torch-compatible), tar, and single-stream compression.

A container scans its own structure and hands each member back to a :class:`MemberScanner` (the scan's router,
:class:`openckpt.scan.route.Router`), one level deeper: containers depend on this protocol, never on the router.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MemberScanner"]


class MemberScanner(Protocol):
    """What scans a member of a container: ``buf[start:end]``, named ``member``, at ``depth``; returns its format."""

    def scan(
        self,
        buf: Any,
        start: int,
        end: int,
        member: str | None,
        depth: int,
        *,
        probe: bool = False,
        loader: str = "pickle",
    ) -> str: ...
