"""Validation of account names, repo ids, branch and tag names, and paths inside a repo."""

from __future__ import annotations

import re

from openckpt.errors import BadRequestError

__all__ = [
    "REPO_TYPES",
    "RESERVED_ACCOUNT_NAMES",
    "check_account_name",
    "check_name",
    "check_new_path",
    "check_path",
    "check_ref_name",
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


_HUB_PATHS = "admin api buckets cas datasets login logout me models search settings spaces static v1 v2"
"""First path segments of this hub's routes and pages (routes/*.py, /static, Xet's /cas, /v1 and /v2), and ``me``,
which the bucket API reads as the caller's own namespace."""
_HUB_PATHS_ELSEWHERE = "auth blog collections docs join new oauth organizations papers pricing users"
RESERVED_ACCOUNT_NAMES = frozenset(f"{_HUB_PATHS} {_HUB_PATHS_ELSEWHERE} favicon.ico robots.txt".split())
"""Names no account may take, in any case: the first path segments of the hub's own pages and API (an account
with such a name would have unreachable pages), and of the Hub's."""


def check_account_name(name: str, *, reserved_ok: bool = False) -> str:
    """A valid name that is not one of :data:`RESERVED_ACCOUNT_NAMES`, unless ``reserved_ok`` (the hub's own
    bootstrap ``admin``)."""
    check_name(name, "account name")
    if not reserved_ok and name.lower() in RESERVED_ACCOUNT_NAMES:
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
    ``MAX_PATH`` bytes, not under ``.git``. A new file's path must also pass :func:`check_new_path`; reads and
    deletions accept older files that do not."""
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


_IGNORED_BY_HFS = dict.fromkeys([*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])
"""Code points macOS's HFS+ ignores in file names (git's ``is_hfs_dotgit``): ``.g\u200cit`` is ``.git`` there."""


def _is_dotgit(part: str) -> bool:
    """Whether a path segment names ``.git`` on some file system: in any case, with trailing dots or spaces (NTFS),
    as the 8.3 short name ``git~1``, or with code points HFS+ ignores."""
    name = part.translate(_IGNORED_BY_HFS).lower().rstrip(". ")
    return name in (".git", "git~1")


def check_new_path(path: str) -> str:
    """The path of a file a commit adds: :func:`check_path`, and no segment that is ``.git`` on any file system (a
    download into a working tree would write into its git directory)."""
    check_path(path)
    if any(_is_dotgit(part) for part in path.split("/")):
        raise BadRequestError(f"invalid path {path!r}: .git (in any case) is reserved")
    return path


MAX_REF = 255
_REF_FORBIDDEN = frozenset(" ~^:?*[\\")
_HEX = re.compile(r"[0-9a-fA-F]{7,40}")


def check_ref_name(name: str, kind: str = "branch") -> str:
    """A new branch or tag name, as ``git check-ref-format --branch`` allows it and the Hub keeps it unambiguous.

    Git's rules: no ``..``, ASCII control character, space or any of ``~^:?*[\\``; no segment starting with ``.`` or
    ending with ``.lock``; no ``@{``; not ``@``; no leading, trailing or double ``/``; not ending with ``.``; not
    starting with ``-``. The Hub's: not ``HEAD``, not under ``refs/`` (``refs/pr/N`` are its pull requests), and not
    7 to 40 hex digits, which would read as a commit id.
    """

    def refuse(why: str) -> BadRequestError:
        return BadRequestError(f"invalid {kind} name {name[:100]!r}: {why}")

    if not name:
        raise refuse("it is empty")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise refuse("not valid Unicode") from None
    if size > MAX_REF:
        raise refuse(f"{size} bytes, longer than {MAX_REF}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise refuse("control characters are not allowed")
    if bad := sorted(_REF_FORBIDDEN.intersection(name)):
        raise refuse(f"{' '.join(repr(c) for c in bad)} not allowed")
    if ".." in name or "@{" in name:
        raise refuse("'..' and '@{' are not allowed")
    if name.startswith(("/", "-")) or name.endswith(("/", ".")) or "//" in name:
        raise refuse("it may not start with '/' or '-', end with '/' or '.', or hold '//'")
    if any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        raise refuse("no part may start with '.' or end with '.lock'")
    if name in ("@", "HEAD") or name.startswith("refs/"):
        raise refuse("'@', 'HEAD' and names under 'refs/' are git's own")
    if _HEX.fullmatch(name):
        raise refuse("7 to 40 hex digits read as a commit id")
    return name
