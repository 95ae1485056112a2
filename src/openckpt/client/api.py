"""The one way the client reaches a hub: a :class:`huggingface_hub.HfApi` bound to the resolved endpoint."""

from __future__ import annotations

from huggingface_hub import HfApi

from openckpt.client.config import resolve_endpoint
from openckpt.client.tokens import resolve_token

__all__ = ["hf_api", "split_revision", "unreachable"]


def hf_api(endpoint: str | None = None, token: str | None = None) -> HfApi:
    """An ``HfApi`` for ``endpoint`` (resolved as in :mod:`openckpt.client.config`).

    ``token`` None means the token :func:`openckpt.client.tokens.resolve_token` finds for that endpoint
    (``HF_TOKEN``, else the one ``openckpt login`` stored for it, ...), or none at all: ``api.token`` is then
    ``False``, so huggingface_hub never sends a token meant for another hub. Transfers go through Xet when
    ``hf_xet`` is installed (the hub speaks it), else through Git LFS.
    """
    url = resolve_endpoint(endpoint)
    return HfApi(endpoint=url, token=resolve_token(url, token).value or False)


def split_revision(spec: str) -> tuple[str, str | None]:
    """``"owner/name@rev"`` → ``("owner/name", "rev")``; without ``@`` the revision is None."""
    repo_id, sep, revision = spec.partition("@")
    if sep and not revision:
        raise ValueError(f"empty revision in {spec!r}")
    return repo_id, revision or None


def unreachable(error: BaseException) -> str | None:
    """If ``error`` means no answer came from the hub (refused, DNS, timeout), one line saying so; else None.

    huggingface_hub's HTTP stack raises its transport errors (``httpx.TransportError`` in 1.x, ``httpx2``'s in
    later versions, ``requests.ConnectionError`` before) rather than an :class:`OSError`; they are told apart by
    class, without importing either stack.
    """
    names = {(cls.__module__.split(".")[0], cls.__name__) for cls in type(error).__mro__}
    if not names & {("httpx", "TransportError"), ("httpx2", "TransportError"), ("requests", "ConnectionError")}:
        return None
    try:
        url = error.request.url  # type: ignore[attr-defined]
        where = f"{url.scheme}://{url.netloc.decode()}" if hasattr(url, "netloc") else str(url)
    except Exception:
        where = "the hub"
    return f"cannot reach {where}: {error}"
