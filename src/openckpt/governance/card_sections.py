"""Blocks a tool writes into a model card's markdown, kept apart from the text people wrote around them.

A block sits between ``<!-- KEY -->`` and ``<!-- /KEY -->`` markers inside a level-2 section (``## Title``): writing
it again replaces the block of the same key and nothing else; the first time, it goes at the end of its section,
which is added at the end of the card when the card has none.
"""

from __future__ import annotations

import re

__all__ = ["put_block", "section_end"]

_NEXT_SECTION = re.compile(r"^#{1,2}[ \t]", re.MULTILINE)


def _section(title: str) -> re.Pattern[str]:
    return re.compile(rf"^##[ \t]+{re.escape(title)}[ \t]*#*[ \t]*$", re.IGNORECASE | re.MULTILINE)


def section_end(body: str, start: int) -> int:
    """Offset of the first level-1 or level-2 heading after ``start`` outside code fences (else the end)."""
    fence = None
    offset = start
    for line in body[start:].splitlines(keepends=True):
        marker = line.lstrip()[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else fence or marker
        elif fence is None and _NEXT_SECTION.match(line):
            return offset
        offset += len(line)
    return len(body)


def put_block(body: str, key: str, content: str, *, section: str) -> str:
    """``body`` with ``content`` (markdown ending in a newline) as the block ``key`` of the ``## section``."""
    block = f"<!-- {key} -->\n{content}<!-- /{key} -->\n"
    marked = re.compile(rf"<!-- {re.escape(key)} -->\n.*?<!-- /{re.escape(key)} -->\n?", re.DOTALL)
    if marked.search(body):
        return marked.sub(lambda _: block, body, count=1)
    found = _section(section).search(body)
    if found is None:
        return body.rstrip("\n") + ("\n\n" if body.strip() else "") + f"## {section}\n\n{block}"
    end = section_end(body, found.end())
    before = body[:end].rstrip("\n") + "\n\n"
    return before + block + ("\n" + body[end:] if end < len(body) else "")
