"""What a mirror asks its upstream hub: a revision's commit, its files, and their bytes (the Hub API, over httpx).

Transport failures become :class:`UpstreamTimeoutError` (504) and :class:`UpstreamError` (502); an upstream that
has no such repo or revision for the token sent answers None (the mirror then has nothing to serve).

A large file's bytes are read with the standard library's HTTP client, each chunk straight from the socket into the
bytes handed on: httpx's reads of a body (h11's buffers, several copies of every byte) cost four times the CPU (1.0
against 0.28 CPU-s per GB on the bench machine), which a cold read through the mirror pays on the same cores as the
client. Redirects are followed as httpx follows them (the token is not sent to another origin); when the environment
names a proxy, every read goes through httpx, which honours it.
"""

from __future__ import annotations

import functools
import http.client
import re
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

import httpx

from openckpt.errors import UpstreamError, UpstreamTimeoutError

__all__ = ["Upstream", "UpstreamCommit", "UpstreamDeniedError", "UpstreamFile"]

PLURALS = {"model": "models", "dataset": "datasets", "space": "spaces"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
CHUNK = 4 << 20
DIRECT_FROM = 16 << 20
"""Files from this size are read with the standard library's client (module docstring); smaller ones reuse httpx's
pooled connections."""
MAX_REDIRECTS = 20
REDIRECTS = (301, 302, 303, 307, 308)
_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings of every upstream client (httpx's defaults), made once: loading the CA bundle costs ~0.1 s of
    CPU, which each fetch paid before its first byte."""
    return httpx.create_ssl_context()


class UpstreamDeniedError(UpstreamError):
    """The upstream lists a repo's files but refuses their bytes to this token (a gated repo)."""


@dataclass(frozen=True)
class UpstreamFile:
    """A file of an upstream commit as its tree lists it: ``oid`` is the git blob id, ``sha256`` set for LFS files."""

    path: str
    size: int
    oid: str
    sha256: str | None


@dataclass(frozen=True)
class UpstreamCommit:
    """An upstream revision: its commit id, and the title, author, date and parent of that commit where the upstream
    says. The parent is the next commit of the upstream's history listing (``list_repo_commits``, newest first): the
    Hub's API names no parents, and the histories its commits make are linear, so this is the first parent."""

    sha: str
    title: str
    author: str
    date: str | None
    parent: str | None = None


class Upstream:
    """One upstream hub at ``url``, asked with ``token`` (None: anonymously)."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # httpx drops the authorization header on a redirect to another origin (a CDN): the token stays here
        self.client = httpx.Client(headers=headers, timeout=TIMEOUT, follow_redirects=True, verify=_tls())

    def close(self) -> None:
        self.client.close()

    def _get(self, url: str, **params: Any) -> httpx.Response | None:
        try:
            response = self.client.get(url, params=params or None)
        except httpx.TimeoutException as e:
            raise UpstreamTimeoutError(f"the upstream {self.url} did not answer in time: {e}") from e
        except httpx.TransportError as e:
            raise UpstreamError(f"the upstream {self.url} cannot be reached: {e}") from e
        if response.status_code in (401, 403, 404):
            return None
        if response.status_code >= 400:
            raise UpstreamError(f"the upstream {self.url} answered {response.status_code} for {url}")
        return response

    def commit(self, repo_type: str, repo_id: str, revision: str) -> UpstreamCommit | None:
        """The commit ``revision`` names in the upstream repo; None if it has no such repo or revision for us."""
        base = f"{self.url}/api/{PLURALS[repo_type]}/{repo_id}"
        found = self._get(f"{base}/revision/{quote(revision, safe='')}")
        if found is None:
            return None
        info = found.json()
        sha = str(info.get("sha") or "")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise UpstreamError(f"the upstream {self.url} named no commit id for {repo_id}@{revision}")
        title, author, date = f"Mirror of {repo_id}@{sha[:8]}", "", info.get("lastModified")
        commits = self._get(f"{base}/commits/{sha}", limit=2)  # the commit and its parent; not every hub lists them
        listed = commits.json() if commits is not None else []
        if not (isinstance(listed, list) and listed and isinstance(listed[0], dict) and listed[0].get("id") == sha):
            return UpstreamCommit(sha, title, author, date)
        title = str(listed[0].get("title") or title)
        authors = listed[0].get("authors") or []
        author = str(authors[0].get("user", "")) if authors and isinstance(authors[0], dict) else ""
        parent = listed[1].get("id") if len(listed) > 1 and isinstance(listed[1], dict) else None
        parent = parent if isinstance(parent, str) and re.fullmatch(r"[0-9a-f]{40}", parent) else None
        return UpstreamCommit(sha, title, author, listed[0].get("date") or date, parent)

    def files(self, repo_type: str, repo_id: str, sha: str) -> list[UpstreamFile]:
        """Every file of commit ``sha`` (the recursive tree listing, all its pages)."""
        url: str | None = f"{self.url}/api/{PLURALS[repo_type]}/{repo_id}/tree/{sha}?recursive=true"
        out: list[UpstreamFile] = []
        while url is not None:
            page = self._get(url)
            if page is None:
                raise UpstreamError(f"the upstream {self.url} lists no files for {repo_id}@{sha}")
            for item in page.json():
                if item.get("type") != "file":
                    continue
                lfs = item.get("lfs") or {}
                out.append(UpstreamFile(item["path"], int(item["size"]), item["oid"], lfs.get("oid")))
            link = _NEXT.search(page.headers.get("link", ""))
            url = link.group(1) if link else None
        return out

    @contextmanager
    def download(
        self, repo_type: str, repo_id: str, sha: str, path: str, *, size: int = 0
    ) -> Iterator[Iterator[bytes]]:
        """The bytes of file ``path`` at commit ``sha`` (``size`` bytes, as the tree says), streamed."""
        url = f"{self.url}/{URL_PREFIXES[repo_type]}{repo_id}/resolve/{sha}/{quote(path)}"
        if size >= DIRECT_FROM and not _proxied():
            connection, body = self._open(url, path)
            try:
                yield self._read(body, path)
            finally:
                connection.close()
            return
        try:
            with self.client.stream("GET", url) as response:
                if response.status_code in (401, 403):
                    raise UpstreamDeniedError(f"the upstream {self.url} refused {path} to this token")
                if response.status_code >= 400:
                    raise UpstreamError(f"the upstream {self.url} answered {response.status_code} for {path}")
                yield self._chunks(response)
        except httpx.TimeoutException as e:
            raise UpstreamTimeoutError(f"the upstream {self.url} stopped sending {path}: {e}") from e
        except UpstreamError:
            raise
        except httpx.HTTPError as e:
            raise UpstreamError(f"the upstream {self.url} failed sending {path}: {e}") from e

    def _open(self, url: str, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """A GET of ``url`` with the standard library's client, its redirects followed: the connection, and the
        response whose body is the file's."""
        headers = {"user-agent": self.client.headers["user-agent"], "accept-encoding": "identity"}
        token = self.client.headers.get("authorization")
        for _ in range(MAX_REDIRECTS):
            parts = urlsplit(url)
            connection = _connect(parts)
            try:
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                connection.request("GET", target, headers={**headers, "authorization": token} if token else headers)
                response = connection.getresponse()
            except TimeoutError as e:
                connection.close()
                raise UpstreamTimeoutError(f"the upstream {self.url} did not answer in time: {e}") from e
            except (OSError, http.client.HTTPException) as e:
                connection.close()
                raise UpstreamError(f"the upstream {self.url} cannot be reached: {e}") from e
            location = response.getheader("location")
            if response.status in REDIRECTS and location:
                connection.close()
                url = urljoin(url, location)
                if not _may_keep_token(parts, urlsplit(url)):
                    token = None
                continue
            if response.status >= 400:
                connection.close()
                if response.status in (401, 403):
                    raise UpstreamDeniedError(f"the upstream {self.url} refused {path} to this token")
                raise UpstreamError(f"the upstream {self.url} answered {response.status} for {path}")
            if response.getheader("content-encoding", "identity").lower() not in ("", "identity"):
                connection.close()
                raise UpstreamError(f"the upstream {self.url} sent {path} encoded, though asked for it as it is")
            return connection, response
        raise UpstreamError(f"the upstream {self.url} redirected {path} more than {MAX_REDIRECTS} times")

    def _read(self, response: http.client.HTTPResponse, path: str) -> Iterator[bytes]:
        """The body in pieces of :data:`CHUNK` bytes (the last shorter), each read from the socket into itself."""
        try:
            while chunk := response.read(CHUNK):
                yield chunk
        except TimeoutError as e:
            raise UpstreamTimeoutError(f"the upstream {self.url} stopped sending {path}: {e}") from e
        except (OSError, http.client.HTTPException) as e:
            raise UpstreamError(f"the upstream {self.url} failed sending {path}: {e}") from e

    @staticmethod
    def _chunks(response: httpx.Response) -> Iterator[bytes]:
        """The body in pieces of about :data:`CHUNK` bytes, joined from the transport's own reads: ``iter_bytes``
        with a chunk size costs three times the CPU here (0.65 against 0.21 CPU-s per 256 MB on the bench machine)."""
        if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
            yield from response.iter_bytes(CHUNK)  # to be decoded
            return
        pieces: list[bytes] = []
        held = 0
        for piece in response.iter_raw():
            pieces.append(piece)
            held += len(piece)
            if held >= CHUNK:
                yield b"".join(pieces)
                pieces, held = [], 0
        if pieces:
            yield b"".join(pieces)


def _proxied() -> bool:
    """Whether the environment names a proxy (then httpx reads every file: it honours the proxy)."""
    return any(urllib.request.getproxies().get(scheme) for scheme in ("http", "https", "all"))


def _connect(parts: SplitResult) -> http.client.HTTPConnection:
    """A connection to the host of ``parts``, made within :data:`TIMEOUT`'s connect time; reads then wait its read
    time."""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(f"the upstream sent to {parts.geturl()}, which is no HTTP URL")
    connection = (
        http.client.HTTPSConnection(parts.hostname, parts.port, timeout=TIMEOUT.connect, context=_tls())
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT.connect)
    )
    try:
        connection.connect()
    except TimeoutError as e:
        connection.close()
        raise UpstreamTimeoutError(f"{parts.netloc} did not answer in time: {e}") from e
    except OSError as e:
        connection.close()
        raise UpstreamError(f"{parts.netloc} cannot be reached: {e}") from e
    assert connection.sock is not None
    connection.sock.settimeout(TIMEOUT.read)
    return connection


def _may_keep_token(old: SplitResult, new: SplitResult) -> bool:
    """Whether a redirect from ``old`` to ``new`` keeps the token, as httpx decides: the same origin, or the same
    host moved from http to https on the default ports."""
    if (old.scheme, old.hostname, old.port) == (new.scheme, new.hostname, new.port):
        return True
    return (
        old.scheme == "http"
        and new.scheme == "https"
        and old.hostname == new.hostname
        and old.port in (None, 80)
        and new.port in (None, 443)
    )
