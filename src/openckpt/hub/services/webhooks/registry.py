"""Webhooks of an account (``HfApi.create_webhook`` and the rest): validation, storage, and their JSON.

Each account sees and changes only its own webhooks; a read token may list and get them, changes need a write token.
Secrets are stored sealed (:mod:`openckpt.hub.services.sealed`, with the ``key`` every function takes).
Deliveries are :mod:`openckpt.hub.services.webhooks.delivery`'s.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openckpt.errors import BadRequestError, ForbiddenError, WebhookNotFoundError
from openckpt.hub.db.engine import Database
from openckpt.hub.db.models import Account, Webhook
from openckpt.hub.services.accounts import Principal
from openckpt.hub.services.names import check_name, split_repo_id
from openckpt.hub.services.sealed import seal, unseal
from openckpt.hub.services.webhooks.delivery import local_target

__all__ = [
    "DOMAINS",
    "WATCHED_TYPES",
    "create_webhook",
    "delete_webhook",
    "get_webhook",
    "list_webhooks",
    "set_disabled",
    "update_webhook",
    "webhook_json",
]

WATCHED_TYPES = ("model", "dataset", "space", "user", "org")
DOMAINS = ("repo", "discussion")
MAX_PER_ACCOUNT = 100
MAX_URL = 2048
MAX_SECRET = 256


def webhook_json(hook: Webhook, key: bytes) -> dict[str, Any]:
    """A webhook as the Hub answers it; only its owner ever gets it, so with its secret (unsealed with ``key``)."""
    secret = unseal(key, hook.secret, owner=f"webhook:{hook.id}") if hook.secret else None
    return {
        "id": hook.id,
        "url": hook.url,
        "watched": hook.watched,
        "domains": hook.domains,
        "secret": secret,
        "disabled": hook.disabled,
        "job": None,
    }


def _url(value: Any, allow_local: bool) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(value) > MAX_URL:
        raise BadRequestError(f"the webhook url must be an http(s) URL of at most {MAX_URL} characters, got {value!r}")
    if not allow_local and (where := local_target(value)) is not None:
        raise BadRequestError(
            f"the webhook url {value!r} reaches {where}, an address of the hub's own network: a hub "
            "administrator can allow such webhooks with OPENCKPT_WEBHOOKS_ALLOW_LOCAL=1"
        )
    return str(value)


def _watched(session: Session, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value or len(value) > 100:
        raise BadRequestError("watched must list 1 to 100 items {type, name}")
    out: list[dict[str, str]] = []
    for item in value:
        kind, name = (item.get("type"), item.get("name")) if isinstance(item, dict) else (None, None)
        if kind not in WATCHED_TYPES or not isinstance(name, str):
            raise BadRequestError(f"each watched item is {{type, name}} with type one of {', '.join(WATCHED_TYPES)}")
        if kind in ("user", "org"):
            check_name(name, f"{kind} name")
            if session.scalar(select(Account.id).where(Account.name == name, Account.kind == kind)) is None:
                raise BadRequestError(f"no {kind} named {name!r} on this hub")
        else:
            name = "/".join(split_repo_id(name))
        if {"type": kind, "name": name} not in out:
            out.append({"type": kind, "name": name})
    return out


def _domains(value: Any) -> list[str]:
    if value is None:
        return list(DOMAINS)
    if not isinstance(value, list) or not value or any(d not in DOMAINS for d in value):
        raise BadRequestError(f"domains must list one or more of {', '.join(DOMAINS)}")
    return [d for d in DOMAINS if d in value]


def _secret(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_SECRET):
        raise BadRequestError(f"the secret must be a string of at most {MAX_SECRET} characters")
    return value or None


def _sealed(key: bytes, webhook_id: str, value: Any) -> str | None:
    secret = _secret(value)
    return seal(key, secret, owner=f"webhook:{webhook_id}") if secret else None


def _check_body(body: dict[str, Any]) -> None:
    if body.get("jobSourceId") is not None or body.get("secrets") is not None:
        raise BadRequestError("this hub runs no Jobs: a webhook sends its payload to a url")


def _writer(principal: Principal) -> None:
    if not principal.can_write:
        raise ForbiddenError("This token is read-only: changing webhooks needs a write token")


def _own(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    hook = session.get(Webhook, webhook_id) if len(webhook_id) <= 24 else None
    if hook is None or hook.account_id != principal.account_id:
        raise WebhookNotFoundError(f"Webhook {webhook_id} not found")
    return hook


def create_webhook(
    db: Database, principal: Principal, *, body: dict[str, Any], allow_local: bool, key: bytes
) -> dict[str, Any]:
    """A new enabled webhook of the caller from the client's JSON ``{url, watched, domains?, secret?}``; with
    ``allow_local`` its url may reach the hub's own network."""
    _writer(principal)
    _check_body(body)
    url = _url(body.get("url"), allow_local)  # before the transaction: it may ask DNS
    with db.write() as session:
        count = session.scalar(
            select(func.count()).select_from(Webhook).where(Webhook.account_id == principal.account_id)
        )
        if (count or 0) >= MAX_PER_ACCOUNT:
            raise BadRequestError(f"an account has at most {MAX_PER_ACCOUNT} webhooks")
        hook = Webhook(
            id=secrets.token_hex(12),
            account_id=principal.account_id,
            url=url,
            watched=_watched(session, body.get("watched")),
            domains=_domains(body.get("domains")),
            disabled=False,
        )
        hook.secret = _sealed(key, hook.id, body.get("secret"))
        session.add(hook)
        session.flush()
        return webhook_json(hook, key)


def update_webhook(
    db: Database, principal: Principal, *, webhook_id: str, body: dict[str, Any], allow_local: bool, key: bytes
) -> dict[str, Any]:
    """Change what the body names; an empty ``watched`` (the client sends one when not given) keeps the items."""
    _writer(principal)
    _check_body(body)
    url = _url(body["url"], allow_local) if body.get("url") is not None else None
    with db.write() as session:
        hook = _own(session, principal, webhook_id)
        if url is not None:
            hook.url = url
        if body.get("watched"):
            hook.watched = _watched(session, body["watched"])
        if body.get("domains") is not None:
            hook.domains = _domains(body["domains"])
        if body.get("secret") is not None:
            hook.secret = _sealed(key, hook.id, body["secret"])
        return webhook_json(hook, key)


def set_disabled(db: Database, principal: Principal, *, webhook_id: str, disabled: bool, key: bytes) -> dict[str, Any]:
    _writer(principal)
    with db.write() as session:
        hook = _own(session, principal, webhook_id)
        hook.disabled = disabled
        return webhook_json(hook, key)


def delete_webhook(db: Database, principal: Principal, *, webhook_id: str) -> None:
    _writer(principal)
    with db.write() as session:
        session.delete(_own(session, principal, webhook_id))


def get_webhook(db: Database, principal: Principal, *, webhook_id: str, key: bytes) -> dict[str, Any]:
    with db.read() as session:
        return webhook_json(_own(session, principal, webhook_id), key)


def list_webhooks(db: Database, principal: Principal, *, key: bytes) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.scalars(
            select(Webhook).where(Webhook.account_id == principal.account_id).order_by(Webhook.created_at, Webhook.id)
        )
        return [webhook_json(hook, key) for hook in rows]
