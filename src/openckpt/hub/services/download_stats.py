"""Which file requests count as a download of a repo: the Hub's rule (docs/hub/models-download-stats).

The Hub counts one download per request, GET or HEAD, of a model's *query files*: ``config.json``,
``config.yaml``, ``hyperparams.yaml`` and ``meta.yaml`` by default, or the files its library names (``peft``:
``adapter_config.json``, ``diffusers``: ``model_index.json``, ``gguf``: ``*.gguf``, ``nemo``: ``*.nemo``), never
every file of a snapshot. One difference, since this hub serves the bytes itself instead of redirecting to a CDN:
``huggingface_hub`` sends a HEAD (counted) and then a GET of the same URL, so a GET from ``huggingface_hub`` is not
counted again, and a GET counts only from its first byte (a resumed download is the same download). Datasets count
every first-byte GET of any file, as before: the Hub counts ``load_dataset`` calls, which this hub cannot see.
"""

from __future__ import annotations

from sqlalchemy import update

from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Repo

__all__ = ["DEFAULT_QUERY_FILES", "count_download", "counts_as_download"]

DEFAULT_QUERY_FILES = frozenset({"config.json", "config.yaml", "hyperparams.yaml", "meta.yaml"})
_LIBRARY_FILES = {"peft": ("adapter_config.json",), "diffusers": ("model_index.json",)}
_LIBRARY_SUFFIXES = {"gguf": ".gguf", "nemo": ".nemo"}


def _is_query_file(path: str, library: str | None) -> bool:
    name = path.rsplit("/", 1)[-1]
    if library in _LIBRARY_SUFFIXES:
        return name.endswith(_LIBRARY_SUFFIXES[library])
    if library in _LIBRARY_FILES:
        return path in _LIBRARY_FILES[library]
    return path in DEFAULT_QUERY_FILES


def counts_as_download(
    path: str, *, repo_type: str, library: str | None, method: str, user_agent: str, range_header: str | None
) -> bool:
    """Whether this request of ``path`` counts as one download of its repo."""
    from_start = (range_header or "bytes=0-").split("=")[-1].split("-")[0] in ("", "0")
    if repo_type != "model":
        return method == "GET" and from_start
    if not _is_query_file(path, library):
        return False
    if method == "HEAD":
        return True
    return method == "GET" and from_start and "hf_hub/" not in user_agent


def count_download(db: Database, repo_id: int) -> None:
    """Add one download to the repo's count (a relative update: concurrent downloads all count)."""
    with db.write() as session:
        session.execute(update(Repo).where(Repo.id == repo_id).values(downloads=Repo.downloads + 1))
