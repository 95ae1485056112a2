"""What the hub server and its clients share: header names, error codes, URL shapes. Imports nothing else."""

from __future__ import annotations

__all__ = [
    "ERROR_CODE",
    "ERROR_MESSAGE",
    "REPO_COMMIT",
    "REPO_TYPE_PLURAL",
    "REPO_TYPE_PREFIX",
    "TOKEN_PREFIX",
]

ERROR_CODE = "X-Error-Code"
ERROR_MESSAGE = "X-Error-Message"
REPO_COMMIT = "X-Repo-Commit"
LINKED_ETAG = "X-Linked-Etag"
LINKED_SIZE = "X-Linked-Size"
REQUEST_ID = "X-Request-Id"
TOKEN_PREFIX = "oc_"

REPO_TYPE_PLURAL = {"model": "models", "dataset": "datasets", "space": "spaces"}
"""Repo type → the path segment of API URLs (``/api/models/...``)."""
REPO_TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
"""Repo type → the prefix of resolve and LFS URLs (``/datasets/org/name/resolve/...``)."""
