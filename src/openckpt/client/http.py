"""huggingface_hub's HTTP session for interactive use: fail at once, in words, when no hub answers.

huggingface_hub retries a refused connection 5 times over about 23 s (``http_backoff``), then shows the
transport's message. :func:`use_fail_fast_session` replaces its shared client with one whose transport turns a
refused connection or an unknown host into :class:`~openckpt.errors.HubUnreachableError` (which is no transport
error, so it is not retried), and an HTML answer to an ``/api/`` request into :class:`~openckpt.errors.NotAHubError`
(the Hub API answers JSON, even its errors). Timeouts and dropped connections are still retried as huggingface_hub
does. The CLI installs it; the library leaves huggingface_hub as its users configured it.
"""

from __future__ import annotations

import httpx2
from huggingface_hub.utils import _http

from openckpt.errors import HubUnreachableError, NotAHubError

__all__ = ["FailFastTransport", "origin", "restore_session", "use_fail_fast_session"]


def origin(url: httpx2.URL) -> str:
    """``http://127.0.0.1:8000/api/models`` → ``http://127.0.0.1:8000``."""
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"


class FailFastTransport(httpx2.BaseTransport):
    """Wraps a transport: a refused connection and an HTML API answer become openckpt errors (see module)."""

    def __init__(self, inner: httpx2.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        where = origin(request.url)
        try:
            response = self.inner.handle_request(request)
        except httpx2.ConnectError as e:
            raise HubUnreachableError(f"no hub answers at {where} ({_reason(e)})", endpoint=where) from e
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.url.path.startswith("/api/") and kind in ("text/html", "application/xhtml+xml"):
            response.close()
            raise NotAHubError(
                f"{where} answered {request.url.path} with an HTML page (HTTP {response.status_code}), not the Hub"
                " API: is this the hub's URL?",
                endpoint=where,
            )
        return response

    def close(self) -> None:
        self.inner.close()


def _reason(error: httpx2.ConnectError) -> str:
    """ "connection refused" or "unknown host", without the transport's links and errno numbers."""
    text = str(error).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "name resolution" in text or "getaddrinfo" in text:
        return "unknown host"
    return "cannot connect"


def _client() -> httpx2.Client:
    return httpx2.Client(
        event_hooks={"request": [_http.hf_request_event_hook]},
        follow_redirects=True,
        timeout=None,
        transport=FailFastTransport(httpx2.HTTPTransport()),
    )


def use_fail_fast_session() -> None:
    """Make huggingface_hub's shared HTTP client the fail-fast one (idempotent)."""
    if _http._GLOBAL_CLIENT_FACTORY is not _client:
        _http.set_client_factory(_client)


def restore_session() -> None:
    """Give huggingface_hub its own HTTP client back, if :func:`use_fail_fast_session` replaced it."""
    if _http._GLOBAL_CLIENT_FACTORY is _client:
        _http.set_client_factory(_http.default_client_factory)
