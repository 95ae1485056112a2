"""Validation of account names, repo ids, revisions and paths inside a repo."""

from __future__ import annotations

import re

from openckpt.errors import BadRequestError

__all__ = [
    "REPO_TYPES",
    "RESERVED_ACCOUNT_NAMES",
    "check_account_name",
    "check_name",
    "check_path",
    "check_revision",
    "split_repo_id",
]

REPO_TYPES = ("model", "dataset", "space")
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
MAX_PATH = 1024


def check_name(name: str, what: str = "name") -> str:
    """A user, organisation or repo name: letters, digits, ``-``, ``_``, ``.``; at most 96 characters."""
    if not _NAME.match(name) or "--" in name or ".." in name or name.endswith(".git"):
        raise BadRequestError(
            f"invalid {what} {name!r}: use 1-96 letters, digits, '-', '_' or '.', not starting or ending with "
            "'-' or '.', without '--' or '..', not ending in '.git'"
        )
    return name


RESERVED_ACCOUNT_NAMES = frozenset(
    {"api", "datasets", "spaces", "models", "settings", "static", "login", "logout", "search"}
)
"""First path segments of the hub's own pages: an account with such a name would have unreachable repo pages."""


def check_account_name(name: str) -> str:
    """A valid name that is not one of the hub's own top-level paths."""
    check_name(name, "account name")
    if name.lower() in RESERVED_ACCOUNT_NAMES:
        raise BadRequestError(f"account name {name!r} is reserved by the hub")
    return name


def split_repo_id(repo_id: str) -> tuple[str, str]:
    """``"owner/name"`` → (owner, name), both validated."""
    parts = repo_id.split("/")
    if len(parts) != 2:
        raise BadRequestError(f"invalid repo id {repo_id!r}: expected 'owner/name'")
    return check_name(parts[0], "owner"), check_name(parts[1], "repo name")


def check_path(path: str) -> str:
    """A file path inside a repo: relative, no ``.``/``..`` segments, no NUL, control character or backslash, at most
    ``MAX_PATH`` bytes."""
    if not path:
        raise BadRequestError("invalid path: it is empty")
    try:
        size = len(path.encode())
    except UnicodeEncodeError:
        raise BadRequestError(f"invalid path {path!r}: not valid Unicode") from None
    if size > MAX_PATH:
        raise BadRequestError(f"invalid path {path[:40]!r}...: {size} bytes, longer than {MAX_PATH}")
    if "\0" in path or "\\" in path or path.startswith("/") or path.endswith("/"):
        raise BadRequestError(f"invalid path {path!r}: must be relative, without NUL or backslash")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise BadRequestError(f"invalid path {path!r}: control characters are not allowed")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BadRequestError(f"invalid path {path!r}: empty, '.' or '..' segments are not allowed")
    if path.split("/")[0] == ".git":
        raise BadRequestError(f"invalid path {path!r}: .git is reserved")
    return path


def check_revision(rev: str) -> str:
    """A branch or tag name as git allows it."""
    bad = ("..", "@{", "//", "\\", " ", "~", "^", ":", "?", "*", "[", "\0")
    if (
        not rev
        or len(rev) > 255
        or any(b in rev for b in bad)
        or rev.startswith(("/", "-"))
        or rev.endswith(("/", ".", ".lock"))
    ):
        raise BadRequestError(f"invalid revision name {rev!r}")
    return rev
